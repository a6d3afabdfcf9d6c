"""Notebook 05's exercises: the boundary weight, the structure loss (Eq. 4's first two terms), LossNet's VGG levels
and its term (Eq. 5–6). The references are ``m2s_lib.losses``' own functions on the same inputs."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Case, Check, CheckResult, Exercise, WrongType, compare_number, dtype_mistake, exact
from .nb04 import compare

__all__ = ["EXERCISES", "LossNetTerm", "StructureLoss", "VGGLevels", "WeightByHand", "seeded_vgg"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TAPS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's vgg16().features


def _masks(spec: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
    """N×1×H×W masks in {0, 1}: the notebook's two toy masks, random blobs, or an empty or full mask."""
    kind, dtype = spec["masks"], DTYPES[spec.get("dtype", "float32")]
    if kind == "toy":
        from ..notebook_utils import thin_structure_mask, toy_polyp

        size = spec["size"]
        return torch.stack([toy_polyp(size, 0)[1], thin_structure_mask(size, 0)]).to(dtype)
    n, h, w = spec["shape"]
    if kind == "random":
        return (torch.rand(n, 1, h, w, generator=generator, dtype=torch.float64) > spec.get("cut", 0.6)).to(dtype)
    return (torch.zeros if kind == "empty" else torch.ones)(n, 1, h, w, dtype=dtype)


def _number(value, what: str):
    """A loss: a one-element tensor (any dtype) or a number, as it came."""
    if type(value) is torch.Tensor and value.numel() != 1:
        raise WrongType(f"{what} must be a single number, got a tensor of shape {tuple(value.shape)}")
    return value.reshape(()) if type(value) is torch.Tensor else value


# -------------------------------------------------------------------------------------------------------------
class WeightByHand(Exercise):
    grade_id = "boundary_weight_tests"
    solution_ids = ("boundary_weight",)
    title = "Exercise 1 (`weight_by_hand`)"
    forbidden = ("m2s_lib.losses.boundary_weight", "m2s_lib.losses.structure_loss")
    checks = (Check("the toy masks", 2), Check("a batch of odd-sized float64 masks", 1),
              Check("empty and full masks", 1))
    hint = ("a 31×31 mean around every pixel, with stride 1 and just enough padding to keep the size (the padded "
            "zeros count in the mean), then the formula above")
    visible = ({"name": "the polyp and the thin-structure mask, 96×96", "feeds": ("the toy masks",), "masks": "toy",
                "size": 96},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {}, {"mask": _masks(spec, generator)})

    def run(self, answer, case) -> dict[str, Any]:
        return {"weight": answer(case["mask"].clone())}

    def judge(self, case, outputs) -> list[CheckResult]:
        from ...losses import boundary_weight

        m = case["mask"]
        local_mean = F.avg_pool2d(m, kernel_size=31, stride=1, padding=15)
        mistakes = {
            "1 + 5 · (avgpool(G) − G): the absolute value is missing": 1 + 5 * (local_mean - m),
            "5 · |avgpool(G) − G|: the 1 is missing (weights must be ≥ 1)": 5 * torch.abs(local_mean - m),
            "1 + |avgpool(G) − G|: the factor 5 is missing": 1 + torch.abs(local_mean - m),
            "an average that ignores the padding (count_include_pad=False): PraNet counts the zeros": 1 + 5 * torch.abs(
                F.avg_pool2d(m, kernel_size=31, stride=1, padding=15, count_include_pad=False) - m),
        }  # fmt: skip
        out = outputs["weight"]
        # weights up to 6 from sums of 961 values: a box sum by convolution or cumsum rounds differently in float32
        tolerance = {} if m.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-4}
        problem = compare(out, boundary_weight(m), mistakes, **tolerance) or dtype_mistake(out, m.dtype)
        return self.results(case, problem)


# -------------------------------------------------------------------------------------------------------------
def structure_mistakes(logits: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The loss that each common mistake computes."""
    from ...losses import boundary_weight, structure_loss

    w = boundary_weight(mask)
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    p = torch.sigmoid(logits)
    inter, union = (w * p * mask).sum(dim=(2, 3)), (w * (p + mask)).sum(dim=(2, 3))
    wbce = (w * bce).sum(dim=(2, 3)) / w.sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    pi, pu = (p * mask).sum(dim=(2, 3)), (p + mask).sum(dim=(2, 3))
    li, lu = (w * logits * mask).sum(dim=(2, 3)), (w * (logits + mask)).sum(dim=(2, 3))
    values = {
        "the authors' slip: a BCE reduced to its plain mean before weighting (reduce='none' instead of "
        "reduction='none')": structure_loss(logits, mask, reproduce_authors_bce_slip=True),
        "a weighted IoU without the +1 terms": (wbce + 1 - inter / (union - inter)).mean(),
        "an unweighted IoU": (wbce + 1 - (pi + 1) / (pu - pi + 1)).mean(),
        "the weighted BCE alone (the IoU term is missing)": wbce.mean(),
        "the weighted IoU alone (the BCE term is missing)": wiou.mean(),
        "a weighted BCE pooled over the whole batch instead of per image": (w * bce).sum() / w.sum() + wiou.mean(),
        "the IoU of the logits instead of sigmoid(logits)": (wbce + 1 - (li + 1) / (lu - li + 1)).mean(),
        "the sum over the batch instead of the mean": (wbce + wiou).sum(),
    }
    return {k: float(v) for k, v in values.items()}


class StructureLoss(Exercise):
    grade_id = "structure_loss_tests"
    solution_ids = ("structure_loss",)
    title = "Exercise 2 (`structure_by_hand`)"
    forbidden = ("m2s_lib.losses.structure_loss", "m2s_lib.losses.M2SNetLoss")
    checks = (Check("the toy masks", 4), Check("a batch of three float64 images", 2), Check("empty masks", 1),
              Check("a single image", 1))
    hint = ("per image (sums over H and W): the weighted mean of the unreduced BCE, plus 1 − (weighted intersection "
            "+ 1) / (weighted union + 1) on the probabilities; then the mean over the batch")
    visible = ({"name": "the two toy masks, 96×96", "feeds": ("the toy masks",), "masks": "toy", "size": 96,
                "scale": 3.0},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        mask = _masks(spec, generator)
        logits = (torch.randn(mask.shape, generator=generator, dtype=torch.float64) * spec["scale"]).to(mask.dtype)
        return Case(spec["name"], {}, {"logits": logits, "mask": mask})

    def run(self, answer, case) -> dict[str, Any]:
        return {"loss": _number(answer(case["logits"].clone(), case["mask"].clone()), "the loss")}

    def judge(self, case, outputs) -> list[CheckResult]:
        from ...losses import structure_loss

        logits, mask = case["logits"], case["mask"]
        loss = outputs["loss"]
        # rel 1e-6: the library computes the weights of a float64 mask in float32 (``target.float()``)
        problem = compare_number(loss, float(structure_loss(logits, mask)), structure_mistakes(logits, mask), rel=1e-6)
        if problem is None and loss.is_floating_point() and loss.dtype != mask.dtype:
            problem = dtype_mistake(loss, mask.dtype)
        return self.results(case, problem)


# -------------------------------------------------------------------------------------------------------------
def seeded_vgg(seed: int) -> nn.Sequential:
    """torchvision's ``vgg16().features[:23]`` with weights drawn from ``seed`` (He-scaled: activations stay of
    order one through the ten convolutions)."""
    from torchvision.models.vgg import cfgs, make_layers

    vgg = make_layers(cfgs["D"])[:23]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in vgg:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.01)
    return vgg.eval().requires_grad_(False)


class VGGLevels(Exercise):
    grade_id = "vgg_levels_tests"
    solution_ids = ("vgg_levels",)
    title = "Exercise 3 (`vgg_levels`)"
    forbidden = ("m2s_lib.losses.LossNet",)
    checks = (Check("the toy masks", 3), Check("a batch of probability maps of another size", 2))
    hint = ("three channels, the ImageNet normalisation, the bilinear resize to `size`×`size`, then the layers one at "
            "a time, keeping the output of each layer whose index is in TAPS")
    visible = ({"name": "the two toy masks, 64×64, resized to 48×48", "feeds": ("the toy masks",), "masks": "toy",
                "size": 64, "input_size": 48},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        if spec["masks"] == "probabilities":
            n, h, w = spec["shape"]
            maps = torch.rand(n, 1, h, w, generator=generator)
        else:
            maps = _masks(spec, generator)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        return Case(spec["name"], {"input_size": spec["input_size"], "seed": seed}, {"maps": maps})

    @staticmethod
    def _device(answer) -> torch.device | None:
        """Where the case runs: the device of the notebook's ImageNet ``mean`` (the answer normalises with it; on a
        GPU it lives there); ``None``: where the case's tensors are (the CPU)."""
        mean = getattr(answer, "__globals__", {}).get("mean")
        return mean.device if type(mean) is torch.Tensor else None

    def run(self, answer, case) -> dict[str, Any]:
        device = self._device(answer)
        maps, vgg = case["maps"].clone(), seeded_vgg(case["seed"])
        if device is not None:
            maps, vgg = maps.to(device), vgg.to(device)
        with torch.no_grad():
            levels = answer(maps, vgg, case["input_size"])
        exact(levels, (list, tuple), "the result")
        if len(levels) != 4:
            raise WrongType(f"expected a list of 4 feature maps, got {len(levels)}")
        return {f"level{i}": level for i, level in enumerate(levels, 1)}

    def judge(self, case, outputs) -> list[CheckResult]:
        from ...losses import LossNet

        vgg, size, maps = seeded_vgg(case["seed"]), case["input_size"], case["maps"]
        lossnet = LossNet(None, input_size=size)
        lossnet.blocks.load_state_dict({f"{i}.{k}": v for i, (a, b) in enumerate(LossNet.SLICES)
                                        for k, v in vgg.state_dict().items() if a <= int(k.split(".")[0]) < b})
        with torch.no_grad():
            reference = lossnet.features(maps)
            x = F.interpolate(maps.repeat(1, 3, 1, 1), size=(size, size), mode="bilinear", align_corners=False)
            plain = []
            for index, layer in enumerate(vgg):
                x = layer(x)
                if index in TAPS:
                    plain.append(x)
        problem = None
        for i in range(4):
            found = compare(outputs[f"level{i + 1}"], reference[i], rtol=1e-4, atol=1e-5, mistakes={
                "the features of the map without the ImageNet normalisation": plain[i]})
            problem = problem or (found and f"level {i + 1}: {found}")
        return self.results(case, problem)


# -------------------------------------------------------------------------------------------------------------
CHANNELS = (64, 128, 256, 512)


class LossNetTerm(Exercise):
    grade_id = "lossnet_term_tests"
    solution_ids = ("lossnet_term",)
    title = "Exercise 4 (`lossnet_term`)"
    forbidden = ("m2s_lib.losses.LossNet",)
    checks = (Check("four levels of features", 2), Check("a perfect prediction gives 0", 1))
    hint = "one number per level, the mean over all its elements of the squared difference; then add the levels up"
    visible = ({"name": "a batch of two, 32×32 at the first level", "feeds": ("four levels of features",), "n": 2,
                "side": 32, "same": False, "dtype": "float32"},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        n, side, dtype = spec["n"], spec["side"], DTYPES[spec["dtype"]]

        def level(i, c):
            return torch.relu(torch.randn(n, c, side >> i, side >> i, generator=generator, dtype=torch.float64)).to(dtype)

        p = [level(i, c) for i, c in enumerate(CHANNELS)]
        g = [x.clone() for x in p] if spec["same"] else [level(i, c) for i, c in enumerate(CHANNELS)]
        return Case(spec["name"], {}, {**{f"p{i}": x for i, x in enumerate(p)}, **{f"g{i}": x for i, x in enumerate(g)}})

    def run(self, answer, case) -> dict[str, Any]:
        with torch.no_grad():
            term = answer([case[f"p{i}"].clone() for i in range(4)], [case[f"g{i}"].clone() for i in range(4)])
        return {"term": _number(term, "L_f")}

    def judge(self, case, outputs) -> list[CheckResult]:
        fp, fg = [case[f"p{i}"] for i in range(4)], [case[f"g{i}"] for i in range(4)]
        reference = float(sum(F.mse_loss(a, b) for a, b in zip(fp, fg)))  # LossNet.forward's sum over the levels
        mistakes = {
            "the sum of squared differences (use the mean per level)": sum(((a - b) ** 2).sum() for a, b in zip(fp, fg)),
            "the L2 norm ‖F_P − F_G‖ per level (the code uses the mean squared difference)": sum(
                torch.linalg.vector_norm(a - b) for a, b in zip(fp, fg)),
            "the mean absolute difference (square it)": sum((a - b).abs().mean() for a, b in zip(fp, fg)),
            "the last level only": ((fp[-1] - fg[-1]) ** 2).mean(),
            "the mean over the levels instead of their sum": reference / 4,
        }  # fmt: skip
        return self.results(case, compare_number(outputs["term"], reference, {k: float(v) for k, v in mistakes.items()},
                                                 rel=1e-5))


EXERCISES = (WeightByHand(), StructureLoss(), VGGLevels(), LossNetTerm())
