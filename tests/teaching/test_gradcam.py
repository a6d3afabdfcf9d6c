"""m2s_lib.teaching.gradcam: layer names → modules, and Grad-CAM maps of a model trained for one SGD step."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from PIL import Image

from m2s_lib.losses import structure_loss
from m2s_lib.mmsm import MMSM
from m2s_lib.model import Decoder, M2SNet
from m2s_lib.teaching import gradcam, viz

H, W = 64, 96  # not square: catches a swapped height/width


def ellipse_masks(n: int, h: int = H, w: int = W) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    masks = [((yy - h * (0.4 + 0.15 * k)) / (h * 0.22)) ** 2 + ((xx - w * 0.45) / (w * 0.2)) ** 2 < 1 for k in range(n)]
    return torch.stack(masks)[:, None].float()


@pytest.fixture(scope="module")
def trained(small_encoder):
    """A small M2SNet after one SGD step on a tiny batch, and that batch."""
    torch.manual_seed(0)
    model = M2SNet(encoder_name=small_encoder)
    masks = ellipse_masks(2)
    images = torch.randn(2, 3, H, W) * 0.3 + masks
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    structure_loss(model(images), masks).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return model, images, masks


def test_layer_names_map_to_modules(trained):
    model = trained[0]
    mmsm = model.mmsm
    assert gradcam.resolve_layer(model, "MS_2^3") is mmsm.units["MS2_3"]
    assert gradcam.resolve_layer(model, "MS2_3") is mmsm.units["MS2_3"]  # module-name spelling
    assert gradcam.resolve_layer(model, "MS_5^1") is mmsm.units["MS5_1"]
    assert gradcam.resolve_layer(model, "CE^2") is mmsm.fuse["CE2"]
    assert gradcam.resolve_layer(model, "CE^4") is mmsm.units["MS2_4"]  # official wiring: CE^4 = MS_2^4
    assert gradcam.resolve_layer(model, "CE^5") is model.decoder.reduce_top
    assert gradcam.resolve_layer(model, "D3") is model.decoder.stages["D3"]
    assert gradcam.resolve_layer(model, "D1") is model.decoder.head
    assert gradcam.resolve_layer(model, "MS_1^3") is model.reduce["E3"]
    assert gradcam.resolve_layer(model, "E3") is model.encoder.layer2
    with pytest.raises(ValueError, match="raw encoder level"):
        gradcam.resolve_layer(model, "MS_1^1")  # resnet18d's E1 has 64 channels: no reduction conv
    with pytest.raises(ValueError, match="no unit"):
        gradcam.resolve_layer(model, "MS_3^4")
    with pytest.raises(ValueError, match="unknown layer"):
        gradcam.resolve_layer(model, "logits")
    names = gradcam.gradcam_layers(model)
    assert len([n for n in names if n.startswith("MS_") and not n.startswith("MS_1")]) == 10
    assert {"CE^1", "CE^4", "CE^5", "D1"} <= set(names)
    for name in names:
        gradcam.resolve_layer(model, name)


def test_paper_wiring_has_its_own_ce4_conv():
    fake = types.SimpleNamespace(mmsm=MMSM(16, wiring="paper"), decoder=Decoder(32, 16), reduce={})
    assert gradcam.resolve_layer(fake, "CE^4") is fake.mmsm.fuse["CE4"]


def test_predicted_region_falls_back_to_top_scores():
    logits = -torch.ones(1, 10, 10)
    logits[0, 2, 3] = -0.5
    category, region = gradcam.predicted_region(logits)
    assert category == 0 and region.shape == (10, 10) and region[2, 3] == 1 and region.sum() >= 1
    three = torch.zeros(3, 4, 4)
    three[2, :2] = 5  # class 2 wins the top half, background the rest
    category, region = gradcam.predicted_region(three)
    assert category == 2 and region[:2].all() and not region[2:].any()


@pytest.mark.parametrize("layer", ["CE^2", "MS_3^2"])
def test_gradcam_map_is_image_sized_finite_and_not_constant(trained, layer):
    model, images, _ = trained
    model.train()
    cam = gradcam.gradcam_map(model, images[0], layer)
    assert cam.shape == (H, W)
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert cam.std() > 1e-3, "a constant Grad-CAM map"
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_gradcam_with_an_explicit_target_region(trained):
    model, images, masks = trained
    cam = gradcam.gradcam_map(model, images[1:2], "D2", target_mask=masks[1, 0])
    assert cam.shape == (H, W) and np.isfinite(cam).all()
    with pytest.raises(ValueError, match="one image"):
        gradcam.gradcam_map(model, images, "D2")


def test_plot_gradcam(trained, tmp_path):
    model, images, masks = trained
    fig = gradcam.plot_gradcam(model, images[0], ["MS_2^3", "CE^4"], mask=masks[0])
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3
    for ax in shown[1:]:
        assert len(ax.images) == 2  # the image and the map over it
        cam = np.ma.getdata(ax.images[1].get_array())
        assert cam.shape == (H, W) and np.isfinite(cam).all()
    out = viz.save_figure(fig, tmp_path / "gradcam.png", dpi=40)
    with Image.open(out) as img:
        img.verify()
