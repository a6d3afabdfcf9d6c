"""Hostile masks: the one mask rule (alpha, palette, JPEG-noised 0/1 masks), all-full and all-empty training sets,
and `m2s data verify --deep` naming each of them."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.data import layout
from m2s_lib.data.folders import SegmentationFolder
from m2s_lib.data.layout import DatasetError, load_mask, mask_value_problem


def mask_reading_note(path):
    return layout.mask_reading_note(path)  # looked up late: the rule's notes are new


def _disk(h: int = 40, w: int = 40, r: float = 10.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= r * r


def _save(path: Path, img: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def _voc_palette() -> list[int]:
    pal = [0] * 768
    pal[3:6] = [128, 0, 0]  # class 1 (aeroplane)
    pal[24:27] = [64, 0, 0]  # class 8 (cat): dark, still an object
    pal[765:768] = [224, 224, 192]  # 255: VOC's void / ignore border
    return pal


def test_white_rgb_mask_with_the_object_in_alpha(tmp_path):
    disk = _disk()
    rgba = np.full((40, 40, 4), 255, np.uint8)
    rgba[..., 3] = disk * 255
    path = _save(tmp_path / "m.png", Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(load_mask(path), disk)  # was 100 % object
    assert "alpha" in mask_reading_note(path)


def test_black_grey_mask_with_the_object_in_alpha(tmp_path):
    disk = _disk()
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 1] = disk * 255
    path = _save(tmp_path / "m.png", Image.fromarray(la, "LA"))
    assert np.array_equal(load_mask(path), disk)  # was empty
    assert "alpha" in mask_reading_note(path)


def test_opaque_rgba_mask_keeps_its_colour(tmp_path):
    disk = _disk()
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = disk[..., None] * 255
    rgba[..., 3] = 255
    path = _save(tmp_path / "m.png", Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(load_mask(path), disk)
    assert mask_reading_note(path) is None


def test_palette_void_border_is_not_object(tmp_path):
    from scipy.ndimage import binary_dilation

    disk = _disk(r=8)
    cat = np.zeros_like(disk)
    cat[2:6, 2:6] = True
    idx = np.zeros((40, 40), np.uint8)
    idx[binary_dilation(disk, iterations=3) & ~disk] = 255  # the void border
    idx[disk] = 1
    idx[cat] = 8
    img = Image.fromarray(idx, "P")
    img.putpalette(_voc_palette())
    path = _save(tmp_path / "m.png", img)
    assert np.array_equal(load_mask(path), disk | cat)
    note = mask_reading_note(path)
    assert "void" in note and "255" in note


def test_binary_palette_mask_white_on_black_any_index(tmp_path):
    disk = _disk()
    idx = np.where(disk, 0, 1).astype(np.uint8)  # white object at index 0, black background at index 1
    img = Image.fromarray(idx, "P")
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    path = _save(tmp_path / "m.png", img)
    assert np.array_equal(load_mask(path), disk)


@pytest.mark.parametrize("quality", [90])  # lower qualities destroy a 0/1 mask (q 50: all 0): no rule recovers it
def test_jpeg_noised_zero_one_mask(tmp_path, quality):
    disk = _disk()
    path = _save(tmp_path / "m.jpg", Image.fromarray(disk.astype(np.uint8)), quality=quality)
    vals = np.asarray(Image.open(path))
    assert vals.max() > 1  # the noise the case is about
    got = load_mask(path).astype(bool)
    iou = (got & disk).sum() / (got | disk).sum()
    assert iou > 0.9, iou  # was empty
    assert mask_value_problem(path) is None
    assert "JPEG" in mask_reading_note(path)


def test_label_map_is_named_as_not_binary(tmp_path):
    lab = np.full((40, 40), 255, np.uint8)
    lab[5:15] = 0  # an OCT-like label image: thin layers, most of it 'everything else' (255)
    lab[15:18] = 80
    lab[18:20] = 160
    path = _save(tmp_path / "m.png", Image.fromarray(lab))
    problem = mask_value_problem(path)
    assert problem is not None and "label" in problem


def _pairs(root: Path, masks: list[Image.Image], ext: str = ".png") -> Path:
    for k, m in enumerate(masks):
        rng = np.random.default_rng(k)
        _save(root / "images" / f"{k:03d}.png", Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
        _save(root / "masks" / f"{k:03d}{ext}", m)
    return root


def test_training_refuses_an_all_full_mask_set(tmp_path):
    root = _pairs(tmp_path / "d", [Image.fromarray(np.full((40, 40), 255, np.uint8)) for _ in range(3)])
    with pytest.raises(DatasetError, match="full"):
        SegmentationFolder(root, size=32, train=True).check_foreground()


def test_training_still_refuses_an_all_empty_mask_set(tmp_path):
    root = _pairs(tmp_path / "d", [Image.fromarray(np.zeros((40, 40), np.uint8)) for _ in range(3)])
    with pytest.raises(DatasetError, match="empty"):
        SegmentationFolder(root, size=32, train=True).check_foreground()


def test_training_accepts_a_normal_set_with_one_full_and_one_empty_mask(tmp_path):
    masks = [np.full((40, 40), 255, np.uint8), np.zeros((40, 40), np.uint8), _disk().astype(np.uint8) * 255]
    root = _pairs(tmp_path / "d", [Image.fromarray(m) for m in masks])
    SegmentationFolder(root, size=32, train=True).check_foreground()


def test_m2s_train_refuses_all_full_masks_in_one_line(tmp_path, capsys):
    from m2s_lib.cli import main

    root = _pairs(tmp_path / "d", [Image.fromarray(np.full((40, 40), 255, np.uint8)) for _ in range(4)])
    code = main(["train", "--profile", "tiny", "--data-root", str(root), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "data.size=32", "data.train_sizes=[32]", "optim.batch_size=2",
                 "model.channels=16", "run.progress=false", "run.max_steps_per_epoch=1", "data.val_fraction=0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("m2s train: error:")]
    assert len(lines) == 1 and "full" in lines[0] and "masks" in lines[0], err


def test_verify_deep_names_each_mask_rule(tmp_path, capsys):
    from scipy.ndimage import binary_dilation

    from m2s_lib.cli import main

    disk = _disk()
    rgba = np.full((40, 40, 4), 255, np.uint8)
    rgba[..., 3] = disk * 255
    idx = np.zeros((40, 40), np.uint8)
    idx[binary_dilation(disk, iterations=3) & ~disk] = 255
    idx[disk] = 1
    pal = Image.fromarray(idx, "P")
    pal.putpalette(_voc_palette())
    buf = io.BytesIO()
    Image.fromarray(disk.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    jpeg01 = Image.open(io.BytesIO(buf.getvalue()))
    folder = tmp_path / "root" / "TestDataset" / "Kvasir"
    _pairs(folder, [Image.fromarray(rgba, "RGBA"), pal])
    _save(folder / "images" / "002.png", Image.fromarray(np.zeros((40, 40, 3), np.uint8)))
    _save(folder / "masks" / "002.jpg", jpeg01, quality=90)
    main(["data", "verify", "polyp-test", "--root", str(tmp_path / "root"), "--deep"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    assert "alpha" in text and "000.png" in text
    assert "void" in text and "001.png" in text
    assert "JPEG" in text and "002.jpg" in text
