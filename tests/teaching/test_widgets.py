"""m2s_lib.teaching.widgets: the explorer builds, every control redraws the figure, and the static fallback works headless."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from m2s_lib.model import M2SNet
from m2s_lib.teaching import widgets

SIZE = 64


def dataset(n: int = 2) -> list[dict]:
    """A tiny in-memory dataset shaped like ``SegmentationFolder`` items."""
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    items = []
    for k in range(n):
        mask = (((yy - 28 - 6 * k) / 14) ** 2 + ((xx - 32) / 18) ** 2 < 1).float()[None]
        image = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(k)) * 0.4 + mask
        items.append({"image": image, "mask": mask, "size": (SIZE, SIZE), "name": f"case{k}"})
    return items


def shown_map(explorer) -> np.ndarray:
    return np.ma.getdata(explorer.figure.axes[1].images[0].get_array()).copy()


@pytest.fixture(scope="module")
def explorer(small_encoder):
    torch.manual_seed(0)
    return widgets.FeatureExplorer(M2SNet(encoder_name=small_encoder), dataset(), device="cpu")


def test_controls_exist(explorer):
    assert set(explorer.controls) == {"image", "level", "order", "scale", "mode", "channel", "cmap", "gradcam"}
    assert explorer.controls["image"].max == 1
    assert explorer.controls["channel"].disabled  # only used in "channel" mode
    assert explorer.controls["scale"].disabled  # MS_1^1 is a level, not a unit: no scales
    assert "CE^3" in explorer.controls["gradcam"].options


def change(explorer, name, value):
    """Set one control; return whether the figure was redrawn and the map before/after."""
    before_count, before = explorer.draw_count, shown_map(explorer)
    explorer.controls[name].value = value
    return explorer.draw_count > before_count, before, shown_map(explorer)


def test_every_control_redraws(explorer):
    c = explorer.controls
    explorer.update()
    # image, level, order, scale, channel mode and channel index change the data shown ...
    for name, value in [("image", 1), ("level", 3), ("order", 2), ("scale", "k=3"), ("scale", "sum"),
                        ("mode", "channel"), ("channel", 5), ("mode", "pca"), ("order", widgets.CE_ORDER)]:
        redrawn, before, after = change(explorer, name, value)
        assert redrawn, name
        assert before.shape != after.shape or not np.allclose(before, after), f"{name}={value!r} changed nothing"
        assert np.isfinite(after).all()
    assert not c["channel"].disabled or c["mode"].value != "channel"
    # ... the colour map changes the colours.
    count = explorer.draw_count
    c["cmap"].value = "magma"
    assert explorer.draw_count == count + 1
    assert explorer.figure.axes[1].images[0].get_cmap().name == "magma"
    # ... and the Grad-CAM layer adds an overlay in the third panel.
    c["gradcam"].value = "CE^2"
    assert explorer.draw_count == count + 2 and explorer.last_error is None
    cam = np.ma.getdata(explorer.figure.axes[2].images[1].get_array())
    assert cam.shape == (SIZE, SIZE) and np.isfinite(cam).all()
    c["gradcam"].value = widgets.GRADCAM_OFF


def test_dependent_controls_stay_consistent(explorer):
    c = explorer.controls
    c["level"].value = 1
    c["order"].value = 5
    c["scale"].value = "k=5"
    c["level"].value = 4  # order 5 does not exist at level 4: the highest valid order is chosen
    assert c["order"].value == 2
    assert [v for _, v in c["order"].options] == [1, 2, widgets.CE_ORDER]
    assert c["scale"].value == "k=5"  # still a valid scale of unit MS_2^4
    c["order"].value = 1
    assert list(c["scale"].options) == ["output"] and c["scale"].disabled


def test_static_fallback_without_frontend(explorer, monkeypatch):
    monkeypatch.delenv("M2S_WIDGETS", raising=False)
    assert not widgets.frontend_attached()  # pytest: no IPython kernel
    assert widgets.display_mode() == "static"
    assert explorer.display() is None
    fig = explorer.static
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(visible) == 15 + 5 + 2  # the Fig. 8 grid with image and mask
    assert "case" in fig.get_suptitle()


def test_frontend_rule(monkeypatch):
    import IPython

    def fake_shell(allow_stdin):
        return types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=allow_stdin))

    monkeypatch.delenv("M2S_WIDGETS", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: fake_shell(True))  # a Jupyter front-end
    assert widgets.frontend_attached()
    monkeypatch.setattr(IPython, "get_ipython", lambda: fake_shell(False))  # papermill / nbclient
    assert not widgets.frontend_attached()
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace())  # terminal IPython
    assert not widgets.frontend_attached()
    monkeypatch.setenv("M2S_WIDGETS", "interactive")
    assert widgets.frontend_attached()
    monkeypatch.setattr(IPython, "get_ipython", lambda: fake_shell(True))
    monkeypatch.setenv("M2S_WIDGETS", "static")
    assert widgets.display_mode() == "static"
    with pytest.raises(ValueError, match="mode"):
        widgets.display_mode("gui")


def test_interactive_display_renders_into_the_image_widget(explorer, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    explorer.display(mode="interactive")
    assert shown == [explorer.widget]
    assert bytes(explorer.view.value).startswith(b"\x89PNG")
    first = bytes(explorer.view.value)
    explorer.controls["level"].value = 2
    assert bytes(explorer.view.value) != first
    explorer._interactive = False


def test_tuple_items_and_models_without_msu(small_encoder):
    from m2s_lib.model import MSNet

    items = [(d["image"], d["mask"]) for d in dataset(1)]
    explorer = widgets.FeatureExplorer(MSNet(encoder_name=small_encoder), items, gradcam=False)
    c = explorer.controls
    c["level"].value = 2
    c["order"].value = 3
    assert list(c["scale"].options) == ["output", "sum"]  # a subtraction unit has no filter scales
    c["scale"].value = "sum"
    assert np.isfinite(shown_map(explorer)).all()
    assert c["gradcam"].disabled
