"""Grad-CAM for the segmentation networks, with the ``grad-cam`` package (``pytorch_grad_cam``).

Grad-CAM weights the channels of one layer's activation by the spatial mean of the gradient of a scalar target
and keeps the positive part of the weighted sum. For segmentation the target is, as in the package's
semantic-segmentation tutorial, the **sum of the logits over a region** — by default the region the model itself
predicts (probability > 0.5; for several classes, the pixels whose arg-max is ``category``). The map answers:
"which positions of this layer push the predicted region's scores up?".

Layers are named like the features of ``model.forward_features`` and mapped to the module that produces them:

==============  =================================================================================
``MS_1^i``      the 64-channel level reduction ``model.reduce["E{i}"]`` (``MS_1^1`` only where E1 is reduced)
``MS_n^i``      the unit ``model.mmsm.units["MS{n}_{i}"]`` (n ≥ 2)
``CE^i``        the fusion conv ``model.mmsm.fuse["CE{i}"]``; ``CE^4`` under ``wiring="official"`` is the
                output of unit ``MS_2^4`` itself, so it maps to that unit; ``CE^5`` is ``decoder.reduce_top``
``D4 D3 D2``    the decoder stages; ``D1`` the output conv (stride-4 logits)
``E2 … E5``     the encoder stages (timm ``feature_info`` modules)
==============  =================================================================================
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..mmsm import NUM_LEVELS, ce_key, ms_key, unit_name
from . import viz
from .viz import Figure

__all__ = [
    "LogitsOnly",
    "SegmentationTarget",
    "gradcam_layers",
    "gradcam_map",
    "plot_gradcam",
    "predicted_region",
    "resolve_layer",
]


class LogitsOnly(nn.Module):
    """Wraps a model so that ``forward`` returns a plain logits tensor (what ``pytorch_grad_cam`` expects)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, dict):
            out = out["logits"]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        return out


class SegmentationTarget:
    """Sum of the logits of ``category`` over ``mask`` (H×W, {0, 1}): the package's semantic-segmentation target,
    written to accept a torch or NumPy mask and to follow the output's device and dtype."""

    def __init__(self, category: int, mask):
        self.category = int(category)
        self.mask = torch.as_tensor(np.asarray(mask, dtype=np.float32))

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(device=model_output.device, dtype=model_output.dtype)
        return (model_output[self.category] * mask).sum()


def _normalise_name(layer: str) -> str:
    """Accept ``"MS_2^3"``, ``"MS2_3"`` (module name), ``"CE^2"`` / ``"CE2"``."""
    name = layer.strip()
    if name.startswith("MS") and not name.startswith("MS_") and "_" in name:
        n, i = name[2:].split("_", 1)
        return ms_key(int(n), int(i))
    if name.startswith("CE") and not name.startswith("CE^") and name[2:].isdigit():
        return ce_key(int(name[2:]))
    return name


def gradcam_layers(model) -> list[str]:
    """Feature names that ``resolve_layer`` maps to a module of ``model``, coarse-to-fine per group."""
    names = []
    for i in range(1, NUM_LEVELS + 1):
        if f"E{i}" in model.reduce:
            names.append(ms_key(1, i))
    for n in range(2, NUM_LEVELS + 1):
        for i in range(1, NUM_LEVELS + 2 - n):
            if unit_name(n, i) in model.mmsm.units:
                names.append(ms_key(n, i))
    for i in range(1, NUM_LEVELS + 1):
        try:
            resolve_layer(model, ce_key(i))
        except ValueError:
            continue
        names.append(ce_key(i))
    names += ["D4", "D3", "D2", "D1"]
    return names


def resolve_layer(model, layer: str | nn.Module) -> nn.Module:
    """The module whose output is feature ``layer`` (see the module docstring), or a clear ``ValueError``."""
    if isinstance(layer, nn.Module):
        return layer
    name = _normalise_name(str(layer))
    mmsm, decoder = model.mmsm, model.decoder
    if name.startswith("MS_") and "^" in name:
        n, i = (int(v) for v in name[3:].split("^"))
        if n == 1:
            if f"E{i}" in model.reduce:
                return model.reduce[f"E{i}"]
            raise ValueError(
                f"{name} is the raw encoder level E{i} (no reduction conv in this model): pick a unit, a CE^i or "
                "a decoder stage"
            )
        if unit_name(n, i) in mmsm.units:
            return mmsm.units[unit_name(n, i)]
        raise ValueError(f"this model has no unit {name} (max_order={mmsm.max_order}, valid: i + n ≤ {NUM_LEVELS + 1})")
    if name.startswith("CE^"):
        i = int(name[3:])
        if i == NUM_LEVELS:
            return decoder.reduce_top
        if f"CE{i}" in mmsm.fuse:
            return mmsm.fuse[f"CE{i}"]
        orders = list(mmsm.orders(i))
        if len(orders) == 1 and unit_name(orders[0], i) in mmsm.units:
            return mmsm.units[unit_name(orders[0], i)]  # CE^4 = MS_2^4 under the official wiring
        raise ValueError(f"{name} is not produced by a module of this model")
    if name in ("D4", "D3", "D2"):
        return decoder.stages[name]
    if name == "D1":
        return decoder.head
    if name in ("E2", "E3", "E4", "E5"):
        module_name = model.encoder.feature_info.module_name()[int(name[1]) - 1]
        for candidate in (module_name, module_name.replace(".", "_")):  # FeatureListNet flattens dotted names
            try:
                return model.encoder.get_submodule(candidate)
            except AttributeError:
                continue
        raise ValueError(f"encoder stage {module_name!r} of {name} was not found in the encoder")
    raise ValueError(
        f"unknown layer {layer!r}: use a feature name such as 'MS_2^3', 'CE^2', 'D3' (see gradcam_layers(model))"
    )


def predicted_region(logits: torch.Tensor, category: int | None = None, fallback_quantile: float = 0.9):
    """The default Grad-CAM region from logits ``C×H×W``: ``(category, H×W float mask)``.

    One class: pixels with probability > 0.5. Several classes: pixels whose arg-max is ``category`` (default: the
    most frequent predicted class other than 0, the background). When that region is empty (an untrained model),
    the pixels with the top 10 % scores of ``category`` are used instead, so the target is never zero.
    """
    logits = logits.detach()
    if logits.shape[0] == 1:
        category = 0 if category is None else int(category)
        region = logits[0] > 0
    else:
        labels = logits.argmax(0)
        if category is None:
            counts = torch.bincount(labels.flatten(), minlength=logits.shape[0])
            counts[0] = 0
            category = int(counts.argmax()) if counts.sum() > 0 else 0
        region = labels == int(category)
    if not region.any():
        scores = logits[int(category)]
        region = scores >= torch.quantile(scores.flatten().float(), fallback_quantile)
    return int(category), region.float().cpu().numpy()


def gradcam_map(model, image: torch.Tensor, layer: str | nn.Module, target_mask=None, category: int | None = None,
                method: str = "gradcam") -> np.ndarray:
    """Grad-CAM of ``layer`` for one ``image`` (3×H×W or 1×3×H×W, normalised): an H×W float array in [0, 1].

    ``target_mask``: the region whose logits are summed (H×W, {0, 1}); default: the predicted region (see
    ``predicted_region``). ``category``: the class channel (multi-class models). ``method``: ``"gradcam"`` or
    ``"gradcam++"``. The model is run in eval mode and its training mode is restored afterwards. The map is
    normalised to [0, 1] by the package; a layer with no positive evidence gives all zeros.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    methods = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
    if method not in methods:
        raise ValueError(f"method={method!r} is unknown: choose one of {tuple(methods)}")
    image = torch.as_tensor(image)
    x = image if image.dim() == 4 else image[None]
    if x.shape[0] != 1:
        raise ValueError(f"gradcam_map takes one image, got a batch of {x.shape[0]}")
    module = resolve_layer(model, layer)
    was_training = model.training
    device = next(model.parameters()).device
    x = x.to(device=device, dtype=next(model.parameters()).dtype)
    wrapper = LogitsOnly(model)
    try:
        model.eval()
        if target_mask is None:
            with torch.no_grad():
                logits = wrapper(x)[0]
            category, region = predicted_region(logits, category)
        else:
            region = np.asarray(target_mask.detach().cpu() if isinstance(target_mask, torch.Tensor) else target_mask,
                                dtype=np.float32)
            region = region.reshape(region.shape[-2:])
            category = 0 if category is None else int(category)
        # An input that requires grad makes gradients reach the layer even when the parameters are frozen.
        x = x.detach().requires_grad_(True)
        with methods[method](model=wrapper, target_layers=[module]) as cam:
            result = cam(input_tensor=x, targets=[SegmentationTarget(category, region)])
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return np.nan_to_num(result[0].astype(np.float32), nan=0.0).clip(0.0, 1.0)


def plot_gradcam(model, image: torch.Tensor, layers: str | Sequence[str] = ("MS_2^3", "CE^2", "D2"), mask=None,
                 target_mask=None, category: int | None = None, alpha: float = 0.5, cmap: str = "jet") -> Figure:
    """The image (with the ``mask`` contour if given), then one Grad-CAM overlay per layer in ``layers``."""
    layers = [layers] if isinstance(layers, (str, nn.Module)) else list(layers)
    maps = [gradcam_map(model, image, layer, target_mask, category) for layer in layers]
    rgb = viz.denormalize(image)
    fig = Figure(figsize=(2.8 * (len(layers) + 1) + 0.6, 3.1), layout="constrained")
    axes = fig.subplots(1, len(layers) + 1, squeeze=False)[0]
    axes[0].imshow(rgb)
    if mask is not None:
        viz._contour(axes[0], viz._mask2d(mask), "lime")
    axes[0].set_title("image" + (" + mask" if mask is not None else ""), fontsize=10)
    im = None
    for ax, layer, cam_map in zip(axes[1:], layers, maps):
        ax.imshow(rgb)
        im = ax.imshow(cam_map, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        name = layer if isinstance(layer, str) else type(layer).__name__
        note = "\n(no positive evidence: all 0)" if not cam_map.any() else ""
        ax.set_title(f"Grad-CAM {viz.feature_title(_normalise_name(name))}{note}", fontsize=10)
    for ax in axes:
        viz._clean(ax)
    if im is not None:
        viz._colorbar(fig, im, list(axes[1:]), shrink=0.85, pad=0.02)
    fig.suptitle("Grad-CAM: target = sum of the logits over the predicted region", fontsize=11)
    return fig
