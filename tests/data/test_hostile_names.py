"""Hostile file names and types: one list of image types, Unicode names written two ways, dangling symbolic links,
EXIF-rotated photos."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.constants import IMAGE_EXTENSIONS
from m2s_lib.data.folders import SegmentationFolder
from m2s_lib.data.layout import DatasetError, list_images, load_image, pair_files


def _rgb(h: int = 24, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(h: int = 24, w: int = 40) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return m


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def test_webp_images_are_read_by_training_as_by_predict(tmp_path):
    for k in range(2):
        _save(tmp_path / "images" / f"{k}.webp", _rgb(seed=k), lossless=True)
        _save(tmp_path / "masks" / f"{k}.png", _mask())
    ds = SegmentationFolder(tmp_path, size=32)  # was "holds no images"
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 32, 32)
    assert ".webp" in IMAGE_EXTENSIONS


def test_predict_and_training_list_the_same_image_types(tmp_path):
    from m2s_lib.engine.predict import _collect_inputs

    for ext in (".png", ".webp", ".gif", ".txt"):
        (tmp_path / f"a{ext}").write_bytes(b"x")
    listed = [p.name for p in list_images(tmp_path)]
    assert [p.name for p in _collect_inputs([tmp_path])] == listed
    assert "a.gif" not in listed and "a.webp" in listed


def test_unicode_names_written_two_ways_pair(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    _save(tmp_path / "images" / f"{nfc}.png", _rgb())
    _save(tmp_path / "masks" / f"{nfd}.png", _mask())
    images, masks = pair_files(tmp_path / "images", tmp_path / "masks")  # was: missing a mask AND missing an image
    assert len(images) == len(masks) == 1
    ds = SegmentationFolder(tmp_path, size=32)
    assert ds.names == [nfc]


def test_two_files_that_differ_only_in_normalisation_are_named(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "é"), unicodedata.normalize("NFD", "é")
    _save(tmp_path / "images" / f"{nfc}.png", _rgb())
    _save(tmp_path / "images" / f"{nfd}.png", _rgb())
    _save(tmp_path / "masks" / f"{nfc}.png", _mask())
    with pytest.raises(DatasetError, match="Unicode"):
        pair_files(tmp_path / "images", tmp_path / "masks")


def test_dangling_symlink_image_is_reported_as_such(tmp_path):
    _save(tmp_path / "images" / "a.png", _rgb())
    _save(tmp_path / "masks" / "a.png", _mask())
    _save(tmp_path / "masks" / "b.png", _mask())
    (tmp_path / "images" / "b.png").symlink_to(tmp_path / "elsewhere" / "b.png")
    with pytest.raises(DatasetError) as info:
        pair_files(tmp_path / "images", tmp_path / "masks")
    msg = str(info.value)
    assert "symbolic link" in msg and "b.png" in msg and "elsewhere" in msg, msg
    assert "no image" not in msg, msg


def _exif_rotated_jpeg(path: Path, stored: np.ndarray, orientation: int) -> Path:
    img = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, exif=exif.tobytes(), quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path):
    yy, xx = np.mgrid[:40, :24]
    upright = np.stack([yy * 6, xx * 10, np.full_like(yy, 128)], axis=2).astype(np.uint8)  # 24 wide, 40 high
    stored = np.rot90(upright, k=1)  # stored on its side (40 wide, 24 high) with orientation 6 (turn 90 cw)
    _exif_rotated_jpeg(tmp_path / "images" / "a.jpg", np.ascontiguousarray(stored), 6)
    _save(tmp_path / "masks" / "a.png", _mask(40, 24))
    image = load_image(tmp_path / "images" / "a.jpg")
    assert image.shape == (40, 24, 3)
    assert np.abs(image.astype(int) - upright.astype(int)).mean() < 12  # the right way round, not just the shape
    image, mask = SegmentationFolder(tmp_path, size=32).load_pair(0)  # was "must have the same size"
    assert image.shape[:2] == mask.shape[:2]


def test_a_turned_image_gets_an_orientation_hint(tmp_path):
    _save(tmp_path / "images" / "a.png", _rgb(24, 40))
    _save(tmp_path / "masks" / "a.png", _mask(40, 24))
    with pytest.raises(DatasetError, match="orientation"):
        SegmentationFolder(tmp_path, size=32).load_pair(0)
