"""ipywidgets wiring for notebook 08: an explorer of the M2SNet feature pyramid (Fig. 8) with Grad-CAM.

Only wiring lives here; every picture comes from ``m2s_lib.teaching.viz`` / ``m2s_lib.teaching.gradcam``.

``FeatureExplorer(model, dataset)`` shows one figure (input + mask, the selected feature map, a Grad-CAM overlay
or the prediction) driven by controls for the image, level i, order n (or ``CE``), MSU scale (unit output, the
sum of the scale terms, or one term ``|F_k(up A) − F_k(B)|``), channel reduction, channel index, colour map and
Grad-CAM layer.

Headless rule (``frontend_attached``, whose home is :mod:`m2s_lib.progress`): widgets need a live front-end to be
of any use. Without one (papermill, nbclient, tests, plain Python; ``M2S_WIDGETS=static|interactive`` overrides),
the explorer falls back to the static Fig. 8 grid (``viz.plot_feature_pyramid``), displayed as a PNG image output.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..mmsm import NUM_LEVELS, ce_key, ms_key, unit_name
from ..progress import frontend_attached
from . import viz
from .viz import Figure, figure_png, show_figure

__all__ = ["CMAPS", "FeatureExplorer", "display_mode", "figure_png", "frontend_attached"]

CMAPS = ("viridis", "magma", "inferno", "cividis", "gray", "coolwarm", "jet")
GRADCAM_OFF = "off"
CE_ORDER = 0  # value of the "order" control that selects CE^i


def display_mode(mode: str = "auto") -> str:
    """``"auto"`` → ``"interactive"`` or ``"static"`` by ``frontend_attached``; other values are checked and kept."""
    if mode not in ("auto", "interactive", "static"):
        raise ValueError(f"mode={mode!r} is unknown: choose 'auto', 'interactive' or 'static'")
    if mode == "auto":
        return "interactive" if frontend_attached() else "static"
    return mode


def _item_parts(item: Any) -> tuple[torch.Tensor, Any, str | None]:
    """``(image, mask or None, name or None)`` from a dataset item: a dict (``image``, ``mask``, ``name``) or a
    tuple ``(image, mask, ...)``."""
    if isinstance(item, dict):
        return item["image"], item.get("mask"), item.get("name")
    if isinstance(item, (tuple, list)):
        return item[0], item[1] if len(item) > 1 else None, None
    return item, None, None


class FeatureExplorer:
    """Interactive Fig. 8: pick an image, a level i and an order n, and look inside the module.

    Args:
        model: an ``M2SNet`` (or ``MSNet`` / ``FPNBaseline``: scale terms are offered only for MSU units).
        dataset: indexable, items as ``m2s_lib.data.SegmentationFolder`` gives them (dicts with ``image``
            3×H×W normalised, ``mask``, ``name``) or ``(image, mask)`` tuples.
        device: move the model there first (``None``: leave it where it is).
        gradcam: offer the Grad-CAM layer control (one forward + backward per new image/layer).
        figsize: size of the explorer's figure.

    ``controls`` maps names (``image, level, order, scale, mode, channel, cmap, gradcam``) to widgets;
    ``update()`` redraws ``figure`` (``draw_count`` counts redraws); ``display()`` shows the widgets, or the
    static Fig. 8 grid without a front-end (see the module docstring), kept in ``static``; ``static_figure()``
    builds that grid; ``widget`` is the box of controls and picture.
    """

    def __init__(self, model, dataset, device: str | torch.device | None = None, gradcam: bool = True,
                 figsize: Sequence[float] = (12.0, 3.9), cmaps: Sequence[str] = CMAPS):
        import ipywidgets as W

        if len(dataset) == 0:
            raise ValueError("FeatureExplorer needs a dataset with at least one item")
        if device is not None:
            model = model.to(device)
        self.model = model
        self.dataset = dataset
        self.device = next(model.parameters()).device
        self.max_order = model.mmsm.max_order
        self._features: dict[int, dict[str, torch.Tensor]] = {}
        self._cams: dict[tuple[int, str], np.ndarray] = {}
        self._hold = False
        self._interactive = False
        self.draw_count = 0
        self.last_error: str | None = None
        self.static: Figure | None = None
        self.figure = Figure(figsize=tuple(figsize), layout="constrained")

        style = {"description_width": "initial"}
        layers = [GRADCAM_OFF]
        if gradcam:
            from .gradcam import gradcam_layers

            layers += gradcam_layers(model)
        self.controls: dict[str, W.Widget] = {
            "image": W.IntSlider(value=0, min=0, max=len(dataset) - 1, description="image", continuous_update=False,
                                 style=style),
            "level": W.Dropdown(options=[(f"i = {i}", i) for i in range(1, NUM_LEVELS + 1)], value=1,
                                description="level", style=style),
            "order": W.Dropdown(options=self._order_options(1), value=1, description="order", style=style),
            "scale": W.Dropdown(options=["output"], value="output", description="scale", style=style),
            "mode": W.Dropdown(options=list(viz.REDUCE_MODES), value="mean", description="channels", style=style),
            "channel": W.IntSlider(value=0, min=0, max=63, description="channel", continuous_update=False,
                                   disabled=True, style=style),
            "cmap": W.Dropdown(options=list(cmaps), value=cmaps[0], description="colour map", style=style),
            "gradcam": W.Dropdown(options=layers, value=GRADCAM_OFF, description="Grad-CAM layer", style=style,
                                  disabled=not gradcam),
        }
        self.view = W.Image(format="png")
        self.message = W.HTML()
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self._sync_controls()
        self._widget = None

    # ------------------------------------------------------------------------------------------------ data
    def item(self, index: int | None = None) -> tuple[torch.Tensor, Any, str]:
        index = self.controls["image"].value if index is None else int(index)
        image, mask, name = _item_parts(self.dataset[index])
        return image, mask, name if name is not None else f"#{index}"

    def features(self, index: int | None = None) -> dict[str, torch.Tensor]:
        """``model.forward_features`` of image ``index`` (eval mode, no grad), cached."""
        index = self.controls["image"].value if index is None else int(index)
        if index not in self._features:
            image, _, _ = self.item(index)
            x = torch.as_tensor(image)[None].to(self.device, dtype=next(self.model.parameters()).dtype)
            with viz._EvalMode(self.model), torch.no_grad():
                feats = self.model.forward_features(x)
            self._features[index] = {k: v.detach().cpu() for k, v in feats.items()}
        return self._features[index]

    def gradcam(self, index: int | None = None, layer: str | None = None) -> np.ndarray:
        from .gradcam import gradcam_map

        index = self.controls["image"].value if index is None else int(index)
        layer = self.controls["gradcam"].value if layer is None else layer
        key = (index, layer)
        if key not in self._cams:
            image, _, _ = self.item(index)
            self._cams[key] = gradcam_map(self.model, torch.as_tensor(image), layer)
        return self._cams[key]

    # ------------------------------------------------------------------------------------------------ controls
    def _order_options(self, level: int) -> list[tuple[str, int]]:
        top = min(self.max_order, NUM_LEVELS + 1 - level)
        options = [(f"n = {n}" + (" (level)" if n == 1 else ""), n) for n in range(1, top + 1)]
        return options + [(f"CE^{level}", CE_ORDER)]

    def _unit(self, level: int, order: int):
        if order < 2:
            return None
        units = self.model.mmsm.units
        return units[unit_name(order, level)] if unit_name(order, level) in units else None  # noqa: SIM401 (ModuleDict has no .get)

    def _scale_options(self, level: int, order: int) -> list[str]:
        unit = self._unit(level, order)
        if unit is None:
            return ["output"]
        options = ["output", "sum"]
        if hasattr(unit, "scale_terms"):
            options += [f"k={k}" for k in unit.kernel_sizes]
        return options

    def _sync_controls(self) -> None:
        """Make the dependent controls consistent (order range per level, scales per unit, channel range)."""
        c = self.controls
        self._hold = True
        try:
            level = c["level"].value
            options = self._order_options(level)
            values = [v for _, v in options]
            order = c["order"].value
            if [tuple(o) for o in c["order"].options] != options:
                c["order"].options = options
                c["order"].value = order if order in values else max(v for v in values if v != CE_ORDER)
            scales = self._scale_options(level, c["order"].value)
            if list(c["scale"].options) != scales:
                keep = c["scale"].value
                c["scale"].options = scales
                c["scale"].value = keep if keep in scales else "output"
            c["scale"].disabled = len(scales) == 1
            channels = self.selected_tensor().shape[0]
            c["channel"].max = max(channels - 1, 0)
            c["channel"].disabled = c["mode"].value != "channel"
        finally:
            self._hold = False

    def _on_change(self, change) -> None:
        if self._hold:
            return
        self._sync_controls()
        self.update()

    # ------------------------------------------------------------------------------------------------ drawing
    def selected_name(self) -> str:
        level, order = self.controls["level"].value, self.controls["order"].value
        return ce_key(level) if order == CE_ORDER else ms_key(order, level)

    def selected_tensor(self) -> torch.Tensor:
        """The C×h×w tensor chosen by level / order / scale for the current image."""
        c = self.controls
        feats = self.features()
        level, order, scale = c["level"].value, c["order"].value, c["scale"].value
        if order == CE_ORDER or order == 1 or scale == "output":
            return feats[self.selected_name()][0]
        with viz._EvalMode(self.model), torch.no_grad():
            moved = {k: v.to(self.device) for k, v in feats.items() if k.startswith("MS_")}
            unit, a_up, b = viz.unit_inputs(self.model, moved, order, level)
            if scale == "sum":
                out = unit.combine(a_up, b)
            else:
                out = unit.scale_terms(a_up, b)[int(scale[2:])]
        return out[0].cpu()

    def _selected_title(self) -> str:
        c = self.controls
        name = viz.feature_title(self.selected_name())
        scale = c["scale"].value
        if scale == "sum":
            name += r": $\Sigma_k |F_k(A) - F_k(B)|$"
        elif scale.startswith("k="):
            k = scale[2:]
            name += r": $|A - B|$" if k == "1" else rf": $|F_{{{k}}}(A) - F_{{{k}}}(B)|$"
        mode = c["mode"].value
        return f"{name}\n{mode if mode != 'channel' else 'channel ' + str(c['channel'].value)}"

    def update(self) -> Figure:
        """Redraw the figure from the current control values (and refresh the displayed image if shown)."""
        c = self.controls
        image, mask, name = self.item()
        fig = self.figure
        fig.clear()
        axes = fig.subplots(1, 3, squeeze=True)
        axes[0].imshow(viz.denormalize(image))
        if mask is not None:
            viz._contour(axes[0], viz._mask2d(mask), "lime")
        axes[0].set_title(f"{name}" + (" (green: mask)" if mask is not None else ""), fontsize=10)

        data = viz.reduce_map(self.selected_tensor(), c["mode"].value, c["channel"].value)
        h, w = data.shape
        viz._show_map(fig, axes[1], data, f"{self._selected_title()}  {h}×{w}", c["cmap"].value, colorbar=True,
                      fontsize=10)

        self.last_error = None
        layer = c["gradcam"].value
        rgb = viz.denormalize(image)
        if layer != GRADCAM_OFF:
            try:
                cam = self.gradcam(layer=layer)
                axes[2].imshow(rgb)
                im = axes[2].imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
                fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.03)
                axes[2].set_title(f"Grad-CAM {viz.feature_title(layer)}", fontsize=10)
            except Exception as err:  # noqa: BLE001 - keep the explorer alive; say what went wrong
                self.last_error = f"{type(err).__name__}: {err}"
                axes[2].text(0.5, 0.5, self.last_error, ha="center", va="center", wrap=True, fontsize=8)
        else:
            logits = self.features()["logits"][0]
            prob = torch.sigmoid(logits[0]) if logits.shape[0] == 1 else torch.softmax(logits, 0).amax(0)
            axes[2].imshow(viz.overlay(image, prob.numpy(), "red", 0.5))
            axes[2].set_title("prediction (red)", fontsize=10)
        for ax in axes:
            viz._clean(ax)
        self.draw_count += 1
        if self._interactive:
            self.view.value = figure_png(fig)
            self.message.value = f"<span style='color:#b00'>{self.last_error}</span>" if self.last_error else ""
        return fig

    def static_figure(self, index: int | None = None, **kwargs) -> Figure:
        """The Fig. 8 grid of image ``index`` (default: the selected one) with the current reduction and colour map;
        ``kwargs`` go to ``viz.plot_feature_pyramid``."""
        image, mask, name = self.item(index)
        c = self.controls
        kwargs.setdefault("reduce", c["mode"].value)
        kwargs.setdefault("channel", c["channel"].value)
        kwargs.setdefault("cmap", c["cmap"].value)
        kwargs.setdefault("title", f"Fig. 8 feature pyramid — {name}")
        return viz.plot_feature_pyramid(self.features(index), image=image, mask=mask, **kwargs)

    @property
    def widget(self):
        """The ipywidgets box (controls over the figure)."""
        if self._widget is None:
            import ipywidgets as W

            c = self.controls
            rows = [
                W.HBox([c["image"], c["level"], c["order"], c["scale"]]),
                W.HBox([c["mode"], c["channel"], c["cmap"], c["gradcam"]]),
            ]
            self._widget = W.VBox([*rows, self.message, self.view])
        return self._widget

    def display(self, mode: str = "auto") -> None:
        """Show the explorer. ``mode="auto"`` picks ``"interactive"`` (the widgets) when a front-end is attached,
        else ``"static"``: the Fig. 8 grid of the selected image as a PNG image output (see the module docstring),
        kept in ``static`` for saving. Returns nothing, so that a cell ending with it shows it once."""
        if display_mode(mode) == "static":
            self.static = self.static_figure()
            show_figure(self.static, close=False)  # one PNG output; kept open in self.static for saving
            return
        from IPython.display import display

        self._interactive = True
        self.update()
        display(self.widget)

    def _ipython_display_(self):  # a bare `explorer` at the end of a cell behaves like explorer.display()
        self.display()
