"""Losses of Eq. 4–6: weighted BCE + weighted IoU (``structure_loss``) and the LossNet perceptual term ``L_f``.

``L_total = L_IoU^w + L_BCE^w + λ·L_f`` (Eq. 4). The paper prints λ = 1; the authors' training script uses
λ = 0.1, which is the default of ``M2SNetLoss`` here (a setting).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["boundary_weight", "structure_loss", "LossNet", "M2SNetLoss"]


def boundary_weight(target: torch.Tensor, kernel_size: int = 31, strength: float = 5.0) -> torch.Tensor:
    """Pixel weights ``1 + 5·|avgpool31(mask) − mask|`` (PraNet/F3Net): large near boundaries, 1 far from them.

    ``target``: N×C×H×W float in [0, 1] (C one-hot channels for several classes; their maximum is used).
    """
    local_mean = F.avg_pool2d(target, kernel_size, stride=1, padding=kernel_size // 2)
    return 1 + strength * torch.abs(local_mean - target).amax(dim=1, keepdim=True)


def _one_hot(target: torch.Tensor, classes: int) -> torch.Tensor:
    if target.dim() == 4:
        target = target[:, 0]
    return F.one_hot(target.long(), classes).permute(0, 3, 1, 2).float()


def structure_loss(
    logits: torch.Tensor, target: torch.Tensor, reproduce_authors_bce_slip: bool = False
) -> torch.Tensor:
    """Weighted BCE + weighted IoU, Eq. 4's first two terms, averaged over the batch.

    One class (``logits`` N×1×H×W, ``target`` N×1×H×W in {0, 1}): per image,
    ``wBCE = Σ w·bce / Σ w`` and ``wIoU = 1 − (Σ w·p·g + 1) / (Σ w·(p + g) − Σ w·p·g + 1)`` with ``p = σ(logits)``.
    Several classes (``logits`` N×K×H×W, ``target`` N×H×W class ids): softmax cross-entropy with the same
    weights, and the weighted IoU averaged over the K classes.

    ``reproduce_authors_bce_slip=True`` reproduces the authors' ``reduce='none'`` call: that legacy boolean
    argument is truthy, so PyTorch averages the BCE over all pixels *before* the weighting, and the weighted BCE
    silently becomes the plain mean BCE.
    """
    if logits.shape[1] == 1:
        target = target.float()
        if target.dim() == 3:
            target = target[:, None]
        weight = boundary_weight(target)
        if reproduce_authors_bce_slip:
            bce = F.binary_cross_entropy_with_logits(logits, target).expand_as(logits)
        else:
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        prob = torch.sigmoid(logits)
        onehot = target
    else:
        classes = logits.shape[1]
        onehot = _one_hot(target, classes)
        weight = boundary_weight(onehot)
        labels = onehot.argmax(1)
        if reproduce_authors_bce_slip:
            bce = F.cross_entropy(logits, labels).expand(logits.shape[0], 1, *logits.shape[2:])
        else:
            bce = F.cross_entropy(logits, labels, reduction="none")[:, None]
        prob = torch.softmax(logits, dim=1)
    wbce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
    inter = (prob * onehot * weight).sum(dim=(2, 3))
    union = ((prob + onehot) * weight).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce.mean(dim=1) + wiou.mean(dim=1)).mean()


class LossNet(nn.Module):
    """``L_f`` of Eq. 5–6: the L2 distance between frozen VGG-16 features of prediction and mask.

    Four slices of torchvision's VGG-16 ``features`` (``[:4]``, ``[4:9]``, ``[9:16]``, ``[16:23]``: relu1_2,
    relu2_2, relu3_3, relu4_3); inputs are probability maps repeated to 3 channels, ImageNet-normalised and
    resized to ``input_size`` (224); the loss is the sum of the four mean squared errors.

    ``weights``: ``"imagenet"`` (torchvision's download, needs internet once), a file path, or ``None`` (random
    frozen VGG: only for offline tests and teaching — the perceptual signal then means little).
    """

    SLICES = ((0, 4), (4, 9), (9, 16), (16, 23))

    def __init__(self, weights: str | os.PathLike | None = "imagenet", input_size: int | None = 224):
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16
        from torchvision.models.vgg import cfgs, make_layers

        if weights == "imagenet":
            try:
                features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1).features
            except Exception as err:
                raise RuntimeError(
                    f"could not get torchvision's ImageNet VGG-16 weights ({type(err).__name__}: {err}). Offline, copy "
                    "vgg16-397923af.pth into $TORCH_HOME/hub/checkpoints, pass lossnet_weights='/path/to/vgg16.pth', "
                    "or lossnet_weights=None (random frozen VGG, teaching only)."
                ) from err
        else:
            features = make_layers(cfgs["D"])  # VGG-16's convolutional part only: the classifier is never used
            if weights is not None:
                from .backbones import load_state_dict_file

                state = load_state_dict_file(weights)
                prefix = "features." if any(k.startswith("features.") for k in state) else ""
                own = {k: v for k, v in state.items() if k.startswith(prefix) and not k.startswith("classifier.")}
                features.load_state_dict({k[len(prefix):]: v for k, v in own.items()}, strict=True)
        self.blocks = nn.ModuleList(features[a:b] for a, b in self.SLICES)
        self.blocks.requires_grad_(False)
        self.blocks.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.input_size = input_size

    def train(self, mode: bool = True) -> LossNet:
        super().train(mode)
        self.blocks.eval()  # VGG stays in eval mode (frozen), whatever the surrounding model does
        return self

    def prepare(self, maps: torch.Tensor) -> torch.Tensor:
        """N×1×H×W maps in [0, 1] → normalised N×3×S×S VGG input."""
        x = maps.repeat(1, 3, 1, 1) if maps.shape[1] == 1 else maps
        x = (x - self.mean) / self.std
        if self.input_size is not None:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x

    def features(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """The four VGG feature maps of ``maps`` (for Fig. 4 style plots)."""
        x, out = self.prepare(maps), []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``prediction``, ``target``: N×K×H×W probability maps; K > 1 classes are scored one map at a time."""
        prediction = prediction.reshape(-1, 1, *prediction.shape[-2:])
        target = target.reshape(-1, 1, *target.shape[-2:]).to(prediction.dtype)
        loss = prediction.new_zeros(())
        for fp, ft in zip(self.features(prediction), self.features(target)):
            loss = loss + F.mse_loss(fp, ft)
        return loss


class M2SNetLoss(nn.Module):
    """Eq. 4: ``structure_weight · structure_loss + lossnet_weight · LossNet`` on logits and masks (1 and 0.1 as in
    the authors' script; ``structure_weight=0`` is Table 10's "L_f alone").

    ``lossnet_weight=0`` skips LossNet entirely (no VGG is built); ``lossnet`` passes an existing ``LossNet``.
    """

    def __init__(
        self,
        lossnet_weight: float = 0.1,
        lossnet_weights: str | os.PathLike | None = "imagenet",
        lossnet_input_size: int | None = 224,
        reproduce_authors_bce_slip: bool = False,
        lossnet: LossNet | None = None,
        structure_weight: float = 1.0,
    ):
        super().__init__()
        self.lossnet_weight = float(lossnet_weight)
        self.structure_weight = float(structure_weight)
        self.reproduce_authors_bce_slip = reproduce_authors_bce_slip
        if self.lossnet_weight > 0 and lossnet is None:
            lossnet = LossNet(lossnet_weights, lossnet_input_size)
        self.lossnet = lossnet if self.lossnet_weight > 0 else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``{"loss", "structure", "lossnet"}`` (``loss`` is the one to back-propagate)."""
        structure = structure_loss(logits, target, self.reproduce_authors_bce_slip)
        parts = {"structure": structure, "lossnet": structure.new_zeros(())}
        if self.lossnet is not None:
            if logits.shape[1] == 1:
                prob, ref = torch.sigmoid(logits), target.float().reshape(logits.shape)
            else:
                prob, ref = torch.softmax(logits, dim=1), _one_hot(target, logits.shape[1])
            parts["lossnet"] = self.lossnet(prob, ref)
        parts["loss"] = self.structure_weight * structure + self.lossnet_weight * parts["lossnet"]
        return parts
