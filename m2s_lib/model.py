"""M2SNet, MSNet and the FPN baseline: encoder → level reduction → MMSM (Eq. 3) → decoder.

Every network here returns logits of the input's spatial size. ``forward_features`` returns an ordered dict of
every named intermediate, for the visualisation notebooks:

``E1 … E5`` raw encoder levels (``E1`` after the stem's max-pool, stride 4), ``MS_1^1 … MS_1^5`` the 64-channel
levels, every unit output ``MS_n^i``, ``CE^1 … CE^5``, decoder stages ``D4, D3, D2``, ``D1`` (stride-4 logits) and
``logits``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import create_encoder
from .mmsm import MMSM, ce_key
from .subtraction import FILTER_IMPLS, FILTER_WEIGHTS, ConvBNReLU, upsample_like

__all__ = ["M2SNet", "MSNet", "FPNBaseline", "Decoder", "build_model", "MODEL_NAMES"]


class Decoder(nn.Module):
    """Top-down decoder of the authors' code.

    ``CE^5 = CBR(E5)`` (2048 → 64); ``D4 = CBR(up(CE^5) + CE^4)``; ``D3 = CBR(up(D4) + CE^3)``;
    ``D2 = CBR(up(D3) + CE^2)``; ``D1 = conv3×3(up(D2) + CE^1)`` with ``classes`` output channels.
    """

    def __init__(self, top_channels: int, channels: int = 64, classes: int = 1):
        super().__init__()
        self.reduce_top = ConvBNReLU(top_channels, channels)
        self.stages = nn.ModuleDict({f"D{i}": ConvBNReLU(channels, channels) for i in (4, 3, 2)})
        self.head = nn.Sequential(nn.Conv2d(channels, classes, kernel_size=3, padding=1))

    def forward(self, top: torch.Tensor, ce: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = out[ce_key(5)] = self.reduce_top(top)
        for i in (4, 3, 2):
            x = out[f"D{i}"] = self.stages[f"D{i}"](upsample_like(x, ce[ce_key(i)]) + ce[ce_key(i)])
        out["D1"] = self.head(upsample_like(x, ce[ce_key(1)]) + ce[ce_key(1)])
        return out


class M2SNet(nn.Module):
    """Multi-scale in multi-scale subtraction network (the paper's model with its defaults).

    Args follow segmentation_models_pytorch's words: ``encoder_name`` (any timm model with five ``features_only``
    levels; ``"res2net50d"`` = the paper's Res2Net-50 v1b 26w×4s), ``encoder_weights`` (``None``, ``"imagenet"``
    or a file), ``in_channels``, ``classes``. M2SNet-specific: ``unit`` (``"msu"``, ``"su"``, ``"au"``),
    ``wiring`` (``"official"``, ``"paper"``), ``msu_impl`` (``"fast"``, ``"dense"``), ``kernel_sizes``,
    ``filter_weights`` (``"ones"``, ``"gaussian"``), ``share_filters``, ``max_order`` and ``channels``.
    """

    def __init__(
        self,
        encoder_name: str = "res2net50d",
        encoder_weights: str | os.PathLike | None = None,
        in_channels: int = 3,
        classes: int = 1,
        unit: str = "msu",
        wiring: str = "official",
        msu_impl: str = "fast",
        kernel_sizes: Sequence[int] = (1, 3, 5),
        filter_weights: str = "ones",
        share_filters: bool = True,
        max_order: int = 5,
        channels: int = 64,
    ):
        super().__init__()
        if msu_impl not in FILTER_IMPLS:
            raise ValueError(f"msu_impl={msu_impl!r} is unknown: choose one of {FILTER_IMPLS}")
        if filter_weights not in FILTER_WEIGHTS:
            raise ValueError(f"filter_weights={filter_weights!r} is unknown: choose one of {FILTER_WEIGHTS}")
        if filter_weights == "gaussian" and msu_impl == "fast" and unit == "msu":
            raise ValueError("filter_weights='gaussian' has no fast form: pass msu_impl='dense'")
        if int(classes) < 1:
            raise ValueError(f"classes={classes} must be ≥ 1")
        self.config = dict(
            encoder_name=encoder_name, in_channels=in_channels, classes=classes, unit=unit, wiring=wiring,
            msu_impl=msu_impl, kernel_sizes=tuple(kernel_sizes), filter_weights=filter_weights,
            share_filters=share_filters, max_order=max_order, channels=channels,
        )  # fmt: skip
        # Build the cheap, validating parts first so a misspelt option fails before the encoder is created.
        self.mmsm = MMSM(channels, unit, wiring, kernel_sizes, msu_impl, filter_weights, share_filters, max_order)
        self.encoder = create_encoder(encoder_name, encoder_weights, in_channels)
        level_channels = self.encoder.feature_info.channels()
        # MS_1^5 is read only by the units; the decoder makes CE^5 from the raw E5 (authors' code). Without units
        # (the FPN baseline) E5 therefore needs no reduction.
        reduced_levels = range(2, 6) if self.mmsm.max_order >= 2 else range(2, 5)
        self.reduce = nn.ModuleDict({f"E{i}": ConvBNReLU(level_channels[i - 1], channels) for i in reduced_levels})
        if level_channels[0] != channels:  # the authors' x1 (64 channels) is used as is
            self.reduce["E1"] = ConvBNReLU(level_channels[0], channels)
        self.decoder = Decoder(level_channels[-1], channels, classes)

    @property
    def classes(self) -> int:
        return self.config["classes"]

    def encode(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Encoder levels ``E1 … E5``; ``E1`` is the stem output after the max-pool (stride 4), as in the paper."""
        feats = self.encoder(x)
        maxpool = getattr(self.encoder, "maxpool", None)
        e1 = maxpool(feats[0]) if isinstance(maxpool, nn.Module) else F.max_pool2d(feats[0], 3, 2, 1)
        return OrderedDict((f"E{i}", f) for i, f in enumerate([e1, *feats[1:]], start=1))

    def forward_features(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Every named intermediate (see the module docstring), ending with ``logits`` of the input's size."""
        out = self.encode(x)
        levels = [self.reduce[k](v) if k in self.reduce else v for k, v in out.items()]
        out.update(self.mmsm(levels))
        out.update(self.decoder(out["E5"], out))
        out["logits"] = F.interpolate(out["D1"], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]


class MSNet(M2SNet):
    """MSNet (MICCAI 2021): M2SNet with single-scale subtraction units (Eq. 1) everywhere."""

    def __init__(self, encoder_name: str = "res2net50d", encoder_weights=None, in_channels: int = 3, classes: int = 1, **kwargs):
        kwargs.setdefault("unit", "su")
        super().__init__(encoder_name, encoder_weights, in_channels, classes, **kwargs)


class FPNBaseline(M2SNet):
    """The ablation baseline of Table 9: the same encoder and decoder, no subtraction at all.

    ``CE^i = CBR(MS_1^i)``: each reduced level goes through one conv and is added top-down in the decoder.
    With no unit to read it, the top level is not reduced: ``MS_1^5`` is the raw ``E5`` here.
    """

    def __init__(self, encoder_name: str = "res2net50d", encoder_weights=None, in_channels: int = 3, classes: int = 1, **kwargs):
        kwargs.update(max_order=1, wiring="paper")
        super().__init__(encoder_name, encoder_weights, in_channels, classes, **kwargs)


MODEL_NAMES = {"m2snet": M2SNet, "msnet": MSNet, "fpn": FPNBaseline}


def build_model(name: str = "m2snet", **kwargs) -> M2SNet:
    """Build ``"m2snet"``, ``"msnet"`` or ``"fpn"`` by name with constructor keyword arguments."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODEL_NAMES:
        raise ValueError(f"model {name!r} is unknown: choose one of {sorted(MODEL_NAMES)}")
    return MODEL_NAMES[key](**kwargs)

