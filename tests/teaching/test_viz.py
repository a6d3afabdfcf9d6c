"""m2s_lib.teaching.viz: every figure function on a small model, checked for axes, finite image data and a PNG file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from m2s_lib.constants import IMAGENET_MEAN, IMAGENET_STD
from m2s_lib.losses import LossNet
from m2s_lib.mmsm import ms_key
from m2s_lib.model import M2SNet, MSNet
from m2s_lib.teaching import viz

SIZE = 64


def ellipse_masks(n: int, h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    masks = [((yy - h * (0.4 + 0.1 * k)) / (h * 0.22)) ** 2 + ((xx - w * 0.5) / (w * 0.3)) ** 2 < 1 for k in range(n)]
    return torch.stack(masks)[:, None].float()


def image_axes(fig: Figure) -> list:
    """Visible axes that show an image (colour bars and hidden grid cells excluded)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.images]


def assert_finite_images(fig: Figure) -> None:
    for ax in image_axes(fig):
        data = np.ma.getdata(ax.images[0].get_array()).astype(float)
        assert data.size and np.isfinite(data).all(), ax.get_title()


def assert_png(fig: Figure, path) -> None:
    out = viz.save_figure(fig, path, dpi=40)
    assert out.exists() and out.stat().st_size > 0
    with Image.open(out) as img:
        img.verify()
        assert img.format == "PNG"


@pytest.fixture(scope="module")
def model(small_encoder):
    torch.manual_seed(0)
    return M2SNet(encoder_name=small_encoder).eval()


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(1)
    masks = ellipse_masks(2)
    images = torch.randn(2, 3, SIZE, SIZE) * 0.5 + masks
    return images, masks


@pytest.fixture(scope="module")
def features(model, batch):
    with torch.no_grad():
        return model.forward_features(batch[0])


# ------------------------------------------------------------------------------------------------ helpers
def test_denormalize_inverts_imagenet_normalisation():
    rgb = torch.rand(3, 8, 10)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = viz.denormalize(((rgb - mean) / std)[None])
    assert out.shape == (8, 10, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, rgb.permute(1, 2, 0).numpy(), atol=1e-5)
    as_uint8 = viz.denormalize((rgb - mean) / std, as_uint8=True)
    assert as_uint8.dtype == np.uint8 and as_uint8.max() <= 255
    # Arrays pass through (uint8 scaled to [0, 1]); gray becomes RGB.
    assert viz.denormalize(np.full((4, 5, 3), 255, np.uint8)).max() == 1.0
    assert viz.denormalize(np.zeros((4, 5))).shape == (4, 5, 3)


def test_overlay_blends_towards_the_colour():
    image = np.zeros((6, 7, 3), np.float32)
    mask = np.zeros((6, 7), np.float32)
    mask[2:4, 3:5] = 1
    out = viz.overlay(image, mask, color="red", alpha=1.0)
    assert out.shape == (6, 7, 3)
    np.testing.assert_allclose(out[2, 3], [1, 0, 0])
    np.testing.assert_allclose(out[0, 0], [0, 0, 0])
    np.testing.assert_allclose(viz.overlay(image, mask, alpha=0.0), image)
    with pytest.raises(ValueError, match="does not match"):
        viz.overlay(image, np.zeros((3, 3)))


def test_reduce_map_modes():
    torch.manual_seed(0)
    x = torch.randn(1, 5, 6, 7)
    assert viz.reduce_map(x, "mean").shape == (6, 7)
    np.testing.assert_allclose(viz.reduce_map(x, "mean"), x[0].mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(viz.reduce_map(x, "max"), x[0].amax(0).numpy())
    np.testing.assert_allclose(viz.reduce_map(x, "channel", 3), x[0, 3].numpy())
    # A rank-one feature map: the first principal component recovers the spatial pattern (up to scale and offset),
    # with the sign that correlates positively with the channel mean.
    pattern = torch.linspace(-1, 1, 42).reshape(6, 7)
    rank1 = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0]).view(5, 1, 1) * pattern
    pca = viz.reduce_map(rank1, "pca")
    assert np.corrcoef(pca.ravel(), pattern.numpy().ravel())[0, 1] > 0.999
    assert viz.reduce_map(torch.ones(4, 3, 3), "pca").shape == (3, 3)  # constant map: no crash
    with pytest.raises(ValueError, match="mode"):
        viz.reduce_map(x, "median")
    with pytest.raises(ValueError, match="channel"):
        viz.reduce_map(x, "channel", 9)


# ------------------------------------------------------------------------------------------------ Fig. 8
def test_feature_pyramid_grid(features, batch, tmp_path):
    images, masks = batch
    fig = viz.plot_feature_pyramid(features, images, masks, index=1)
    axes = image_axes(fig)
    # 15 MS_n^i (i + n <= 6) + 5 CE^i + image + mask
    assert len(axes) == 15 + 5 + 2
    titles = " ".join(ax.get_title() for ax in axes)
    assert "$MS_{2}^{3}$" in titles and "$CE^{4}$" in titles and "$MS_{5}^{1}$" in titles
    assert "$MS_{3}^{4}$" not in titles  # i + n > 6 does not exist
    assert_finite_images(fig)
    assert_png(fig, tmp_path / "nested" / "pyramid.png")


def test_feature_pyramid_options(features):
    fig = viz.plot_feature_pyramid(features, reduce="pca", shared_scale=True, show_ce=False, cmap="magma")
    axes = image_axes(fig)
    assert len(axes) == 15
    limits = {ax.images[0].get_clim() for ax in axes}
    assert len(limits) == 1  # one shared colour scale ...
    assert len(fig.axes) > len([ax for ax in fig.axes if ax.images])  # ... with a colour bar
    assert_finite_images(fig)
    # A model without units above order 2 (or a subset of levels): the missing cells and columns disappear.
    subset = {k: v for k, v in features.items() if not k.startswith("MS_") or int(k[3]) <= 2}
    fig = viz.plot_feature_pyramid(subset, levels=(2, 3, 4), reduce="channel", channel=7)
    assert len(image_axes(fig)) == 3 + 3 + 3  # MS_1, MS_2 and CE for three levels
    with pytest.raises(ValueError, match="forward_features"):
        viz.plot_feature_pyramid({"logits": features["logits"]})


# ------------------------------------------------------------------------------------------------ Eq. 2 terms
def test_msu_scales(model, features, tmp_path):
    fig = viz.plot_msu_scales(model, features, n=2, i=3)
    assert len(image_axes(fig)) == 2 + 3 + 2  # up(A), B, k = 1, 3, 5, sum, output
    assert_finite_images(fig)
    assert_png(fig, tmp_path / "msu.png")
    # The k = 1 panel is |up(A) - B|; the output panel is MS_2^3 itself.
    maps = viz.msu_scale_maps(model, features, 2, 3)
    torch.testing.assert_close(maps["k=1"], (maps["up(A)"] - maps["B"]).abs())
    torch.testing.assert_close(maps["output"], features[ms_key(2, 3)])
    # Order 5 goes through the extra input conv; without inputs, 5 panels.
    assert len(image_axes(viz.plot_msu_scales(model, features, 5, 1, show_inputs=False, shared_scale=True))) == 5


def test_msu_scales_keeps_batchnorm_statistics(model, features):
    bank = model.mmsm.filters
    before = {k: f.norm.running_mean.clone() for k, f in bank.items()}
    model.train()
    try:
        viz.msu_scale_maps(model, features, 3, 2)
        assert model.training
    finally:
        model.eval()
    for k, f in bank.items():
        torch.testing.assert_close(f.norm.running_mean, before[k])


def test_msu_scales_errors(model, features, small_encoder):
    with pytest.raises(ValueError, match="not a unit"):
        viz.plot_msu_scales(model, features, 1, 2)
    with pytest.raises(ValueError, match="not a unit"):
        viz.plot_msu_scales(model, features, 3, 4)
    msnet = MSNet(encoder_name=small_encoder).eval()
    with torch.no_grad():
        feats = msnet.forward_features(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="unit='msu'"):
        viz.plot_msu_scales(msnet, feats, 2, 1)


# ------------------------------------------------------------------------------------------------ Fig. 4
@pytest.fixture(scope="module")
def lossnet():
    """A real ``LossNet`` (random frozen VGG-16 features, offline). torchvision's ``vgg16()`` would also build and
    initialise the 120 M-parameter classifier that LossNet never uses (seconds on a small CPU): build only the
    feature stack, which is all LossNet keeps."""
    import types

    import torchvision.models
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torchvision.models, "vgg16", lambda weights=None: types.SimpleNamespace(features=make_layers(cfgs["D"])))
        return LossNet(weights=None, input_size=SIZE)


def test_lossnet_features(features, batch, lossnet, tmp_path):
    fig = viz.plot_lossnet_features(batch[1][0], features["logits"][0], lossnet)  # logits: sigmoid applied
    assert len(image_axes(fig)) == 3 * 5
    assert_finite_images(fig)
    assert sum("MSE" in ax.get_title() for ax in fig.axes) == 5
    assert_png(fig, tmp_path / "lossnet.png")
    # A perfect prediction has zero squared difference at every level.
    fig = viz.plot_lossnet_features(batch[1], batch[1], lossnet, reduce="max")
    for ax in image_axes(fig)[-4:]:
        assert float(np.abs(ax.images[0].get_array()).max()) == 0.0


# ------------------------------------------------------------------------------------------------ curves
def metrics_frame() -> pd.DataFrame:
    epochs = np.repeat(np.arange(4), 2)
    val = np.where(np.arange(8) % 2 == 1, np.linspace(0.2, 0.8, 8), np.nan)
    return pd.DataFrame({
        "epoch": epochs, "step": np.arange(8), "lr_encoder": np.linspace(5e-4, 5e-3, 8),
        "lr_head": np.linspace(5e-3, 5e-2, 8), "train_loss": np.linspace(1.0, 0.3, 8),
        "train_structure": np.linspace(0.9, 0.25, 8), "train_lossnet": np.linspace(0.1, 0.05, 8),
        "val_dice": val, "val_iou": val * 0.9, "val_mae": 1 - val, "time_s": 1.0, "images_per_s": 5.0,
    })


def test_training_curves(tmp_path):
    fig = viz.plot_training_curves(metrics_frame())
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation", "learning rate"]
    for ax in fig.axes:
        assert ax.lines and all(np.isfinite(line.get_ydata()).all() for line in ax.lines)
    assert fig.axes[2].get_yscale() == "log"
    assert_png(fig, tmp_path / "curves.png")
    # A CSV with only some columns (and an empty one): only the panels that have data.
    path = tmp_path / "metrics.csv"
    metrics_frame()[["epoch", "train_loss", "val_dice"]].assign(train_lossnet="").to_csv(path, index=False)
    fig = viz.plot_training_curves(path)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation"]
    with pytest.raises(ValueError, match="no plottable column"):
        viz.plot_training_curves(pd.DataFrame({"epoch": [0, 1], "time_s": [1.0, 2.0]}))


# ------------------------------------------------------------------------------------------------ Fig. 6
def test_predictions_grid(batch, features, tmp_path):
    images, masks = batch
    fig = viz.plot_predictions(images, masks, {"M2SNet": features["logits"], "oracle": masks}, names=["a", "b"])
    axes = image_axes(fig)
    assert len(axes) == 2 * 4
    assert_finite_images(fig)
    assert axes[0].get_ylabel() == "a"
    # The oracle column is drawn with contours (ground truth and prediction).
    assert len(axes[3].collections) >= 2
    assert_png(fig, tmp_path / "predictions.png")
    single = viz.plot_predictions(list(images), list(masks[:, 0]), torch.sigmoid(features["logits"]), max_images=1)
    assert len(image_axes(single)) == 3


# ------------------------------------------------------------------------------------------------ saving
def test_save_figure_is_atomic_and_creates_folders(tmp_path):
    fig = Figure(figsize=(2, 2))
    fig.subplots().imshow(np.eye(4))
    out = viz.save_figure(fig, tmp_path / "a" / "b" / "fig", dpi=30)
    assert out == tmp_path / "a" / "b" / "fig.png" and out.stat().st_size > 0
    first = out.stat().st_size
    fig.axes[0].set_title("a longer title changes the picture")
    assert viz.save_figure(fig, out, dpi=30) == out
    assert out.stat().st_size != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["fig.png"]  # no temporary file left behind


def test_figures_show_as_png_in_notebooks_whatever_the_backend():
    fig = viz.Figure(figsize=(1, 1))
    fig.subplots().imshow(np.eye(3))
    assert isinstance(fig, Figure) and fig._repr_png_().startswith(b"\x89PNG")


def test_on_synthetic_polyps(model, tmp_path):
    """The grid also renders for the synthetic data generator's images."""
    from m2s_lib.data import synthetic

    root = synthetic.generate("polyp", tmp_path / "polyp", n=1, seed=0, size=SIZE, n_test=1, progress=False,
                              workers=1)
    image_path = min((root / "TrainDataset" / "images").iterdir())
    mask_path = min((root / "TrainDataset" / "masks").iterdir())
    rgb = torch.from_numpy(np.asarray(Image.open(image_path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    image = (rgb - mean) / std
    mask = torch.from_numpy((np.asarray(Image.open(mask_path).convert("L")) >= 128).astype(np.float32))[None]
    with torch.no_grad():
        feats = model.forward_features(image[None])
    fig = viz.plot_feature_pyramid(feats, image, mask)
    assert len(image_axes(fig)) == 22
    assert_finite_images(fig)


def test_map_auc_is_the_rank_statistic():
    from m2s_lib.teaching.figures import map_auc

    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    assert map_auc(mask.astype(float), mask) == 1.0 and map_auc(-mask.astype(float), mask) == 0.0
    assert map_auc(np.zeros((8, 8)), mask) == 0.5  # all ties: no information
    assert np.isnan(map_auc(np.zeros((8, 8)), np.zeros((8, 8))))
    rng = np.random.default_rng(0)
    score = rng.random((8, 8))
    pos, neg = score[mask], score[~mask]
    pairs = (pos[:, None] > neg[None, :]).mean()  # the definition: P(score of a polyp pixel > a background one)
    assert map_auc(score, mask.astype(np.uint8) * 255) == pytest.approx(pairs)


def test_feature_auc_grid(model):
    from m2s_lib.teaching.figures import feature_auc, plot_feature_auc

    images = torch.rand(2, 3, SIZE, SIZE)
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[:, :, SIZE // 4 : SIZE // 2, SIZE // 4 : SIZE // 2] = 1
    with torch.no_grad():
        features = model.eval().forward_features(images)
    scores = feature_auc(features, masks)
    assert "MS_1^1" in scores and "CE^1" in scores and all(0 <= v <= 1 for v in scores.values())
    assert len(scores) == sum(1 for k in features if k.startswith(("MS_", "CE^")))
    fig = plot_feature_auc(scores, "t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == len(scores) and f"{scores['CE^1']:.2f}" in texts
