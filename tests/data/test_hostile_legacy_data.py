"""Hostile inputs for the data layer: unreadable, odd-mode and odd-mask files, unpaired names, data roots
without a layout, bad archives for `m2s data download --source`.
"""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hostile_support import (  # noqa: F401
    TRAIN_SMALL,
    _archive,
    _test_set_tree,
    _zip,
    digests,
    disk,
    m2s,
    pair_folder,
    png,
    refused,
    rgb,
)
from PIL import Image


# ---------------------------------------------------------------------------------------------------------------
# Image and mask files (the data layer)
# ---------------------------------------------------------------------------------------------------------------
def _bad_image_bytes(kind: str, tmp_path: Path) -> bytes:
    good = io.BytesIO()
    Image.fromarray(rgb()).save(good, format="PNG")
    return {
        "truncated": good.getvalue()[: len(good.getvalue()) // 2],
        "zero-byte": b"",
        "text": b"this is a text file, not a picture\n",
    }[kind]


@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "text"])
@pytest.mark.parametrize("where", ["images", "masks"])
def test_unreadable_file_is_named_by_verify_deep(kind, where, tmp_path, capsys):
    root = pair_folder(tmp_path / "data" / "TrainDataset")
    bad = root / where / "001.png"
    bad.write_bytes(_bad_image_bytes(kind, tmp_path))
    before = digests(tmp_path / "data")
    got, out, err = m2s(capsys, "data", "verify", "polyp-train", "--root", tmp_path / "data", "--deep")
    assert got == 1
    problem = [ln for ln in out.splitlines() if "problem:" in ln and "001.png" in ln]
    assert len(problem) == 1 and "cannot read" in problem[0] and "Replace or delete this file" in problem[0], out
    assert digests(tmp_path / "data") == before


@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "text"])
def test_unreadable_file_in_training_data_is_one_line(kind, tmp_path, capsys):
    root = pair_folder(tmp_path / "data", n=4)
    (root / "images" / "002.png").write_bytes(_bad_image_bytes(kind, tmp_path))
    before = digests(root)
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "1", *TRAIN_SMALL)  # fmt: skip
    assert "002.png" in msg and "Replace or delete this file" in msg
    assert digests(root) == before and not (tmp_path / "run" / "best.pt").exists()


@pytest.mark.parametrize("mode", ["16-bit", "RGBA", "grayscale", "palette", "LA", "CMYK-jpeg", "float-tiff"])
def test_image_modes_load_as_rgb(mode, tmp_path):
    from m2s_lib.data import load_image

    base = rgb(24, 20)
    path = tmp_path / "x.png"
    if mode == "16-bit":
        Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(path)
        expect = np.repeat(base[..., :1], 3, axis=2)
    elif mode == "RGBA":
        Image.fromarray(np.dstack([base, np.full((24, 20), 7, np.uint8)])).save(path)
        expect = base
    elif mode == "grayscale":
        Image.fromarray(base[..., 1]).save(path)
        expect = np.repeat(base[..., 1:2], 3, axis=2)
    elif mode == "palette":
        img = Image.fromarray(base).convert("P")
        img.save(path)
        expect = np.asarray(img.convert("RGB"))
    elif mode == "LA":
        Image.fromarray(np.dstack([base[..., 2], base[..., 0]])).save(path)
        expect = np.repeat(base[..., 2:3], 3, axis=2)
    elif mode == "CMYK-jpeg":
        path = tmp_path / "x.jpg"
        Image.fromarray(base).convert("CMYK").save(path, quality=95)
        expect = None
    else:
        path = tmp_path / "x.tif"
        Image.fromarray(base[..., 0].astype(np.float32) / 255.0).save(path)
        expect = np.repeat(base[..., :1], 3, axis=2)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (24, 20, 3)
    if expect is not None:
        assert np.abs(image.astype(int) - expect.astype(int)).max() <= 1


MASK_CASES = {
    "0/255 png": (lambda m: m.astype(np.uint8) * 255, ".png", {}),
    "0/1 png": (lambda m: m.astype(np.uint8), ".png", {}),  # failure 1: read as empty before the fix
    "0/1 bmp": (lambda m: m.astype(np.uint8), ".bmp", {}),
    "0/1 16-bit": (lambda m: m.astype(np.uint16), ".png", {}),
    "0/65535 16-bit": (lambda m: m.astype(np.uint16) * 65535, ".png", {}),
    "JPEG noise": (lambda m: m.astype(np.uint8) * 255, ".jpg", {"quality": 60}),
    "bool (mode 1)": (lambda m: m, ".png", {}),
    "RGB red": (
        lambda m: np.dstack([m.astype(np.uint8) * 200, np.zeros_like(m, np.uint8), np.zeros_like(m, np.uint8)]),
        ".png",
        {},
    ),
    "RGBA white": (
        lambda m: np.dstack([np.repeat(m[..., None].astype(np.uint8) * 255, 3, 2), np.full(m.shape, 255, np.uint8)]),
        ".png",
        {},
    ),
}


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_binary_mask_encodings_read_the_same(case, tmp_path):
    from m2s_lib.data import load_mask

    make, ext, kw = MASK_CASES[case]
    truth = disk(40, 40, 12)
    path = png(tmp_path / f"m{ext}", make(truth), **kw)
    mask = load_mask(path)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 1}
    assert (mask.astype(bool) == truth).mean() > 0.99, case


def test_palette_mask_with_index_1_is_foreground(tmp_path):
    from m2s_lib.data import load_mask

    truth = disk(32, 32, 9)
    img = Image.fromarray(truth.astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.save(tmp_path / "p.png")
    assert (load_mask(tmp_path / "p.png").astype(bool) == truth).all()


def test_multiclass_label_map_is_unchanged_and_unknown_value_named(tmp_path):
    from m2s_lib.data import GOALS_CLASS_VALUES, DatasetError, load_mask

    ids = np.zeros((20, 24), np.int64)
    ids[4:8], ids[8:12], ids[12:16] = 1, 2, 3
    values = np.asarray(GOALS_CLASS_VALUES, np.uint8)[ids]
    png(tmp_path / "l.png", values)
    assert (load_mask(tmp_path / "l.png", 4, GOALS_CLASS_VALUES) == ids).all()
    values[0, 0] = 1  # a 0/1 reading must not touch label maps: 1 is simply not a GOALS value
    png(tmp_path / "bad.png", values)
    with pytest.raises(DatasetError, match=r"bad\.png: label values \[1\]"):
        load_mask(tmp_path / "bad.png", 4, GOALS_CLASS_VALUES)


def test_zero_one_masks_train_on_real_foreground(tmp_path):
    """Failure 1: 0/1 masks were binarised at 128 into empty masks, and training 'succeeded' on nothing."""
    from m2s_lib.data import SegmentationFolder

    root = pair_folder(tmp_path / "d", n=3, mask=lambda m: m.astype(np.uint8))
    ds = SegmentationFolder(root, size=32)
    for i in range(len(ds)):
        assert ds[i]["mask"].sum() > 20, ds.names[i]


def test_dataset_whose_masks_are_all_empty_is_refused(tmp_path, capsys):
    root = pair_folder(tmp_path / "d", n=4, mask=lambda m: np.zeros(m.shape, np.uint8))
    before = digests(root)
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "1", *TRAIN_SMALL)  # fmt: skip
    assert "empty" in msg and str(root) in msg and "mask" in msg
    assert digests(root) == before and not (tmp_path / "run" / "best.pt").exists()


def test_one_empty_mask_is_allowed(tmp_path):
    from m2s_lib.data import SegmentationFolder

    root = pair_folder(tmp_path / "d", n=3)
    png(root / "masks" / "001.png", np.zeros((32, 32), np.uint8))  # a polyp-free frame
    ds = SegmentationFolder(root, size=32)
    assert ds.verify() == [] and ds[1]["mask"].sum() == 0


@pytest.mark.parametrize("values,words", [((0, 60), "read as empty"), ("gradient", "not a binary mask")])
def test_verify_deep_reports_masks_whose_values_look_wrong(values, words, tmp_path, capsys):
    root = pair_folder(tmp_path / "data" / "TrainDataset", n=3)
    if values == "gradient":  # a photo saved as a mask
        bad = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    else:
        bad = np.where(disk(), values[1], values[0]).astype(np.uint8)
    png(root / "masks" / "002.png", bad)
    got, out, _ = m2s(capsys, "data", "verify", "polyp-train", "--root", tmp_path / "data", "--deep")
    assert got == 1
    lines = [ln for ln in out.splitlines() if "problem:" in ln and "002.png" in ln]
    assert len(lines) == 1 and words in lines[0], out


def test_size_mismatch_names_both_files(tmp_path, capsys):
    root = pair_folder(tmp_path / "d", n=3)
    png(root / "masks" / "001.png", disk(20, 30).astype(np.uint8) * 255)
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "1", *TRAIN_SMALL)  # fmt: skip
    assert "001.png" in msg and "30x20" in msg and "32x32" in msg and "same size" in msg


def test_unpaired_names_are_listed(tmp_path, capsys):
    root = pair_folder(tmp_path / "d", n=3)
    png(root / "images" / "extra.png", rgb())
    (root / "masks" / "000.png").rename(root / "masks" / "zzz.png")
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "1", *TRAIN_SMALL)  # fmt: skip
    assert "extra" in msg and "000" in msg and "zzz" in msg and "paired by file name" in msg


def test_hidden_and_system_files_are_ignored(tmp_path):
    from m2s_lib.data import SegmentationFolder

    root = pair_folder(tmp_path / "d", n=2)
    (root / "images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "images" / "._000.png").write_bytes(b"AppleDouble")
    (root / "masks" / "Thumbs.db").write_bytes(b"junk")
    (root / "masks" / ".hidden.png").write_bytes(b"junk")
    ds = SegmentationFolder(root, size=32)
    assert ds.names == ["000", "001"] and ds.verify() == []


def test_non_ascii_names_pair_and_load(tmp_path, capsys):
    from m2s_lib.data import SegmentationFolder

    root = tmp_path / "données" / "TrainDataset"
    for k, stem in enumerate(["polype_é", "息肉", "Ölbild 1"]):
        png(root / "images" / f"{stem}.jpg", rgb(32, 32, k))
        png(root / "masks" / f"{stem}.png", disk().astype(np.uint8) * 255)
    ds = SegmentationFolder(root, size=32)
    assert sorted(ds.names) == sorted(["polype_é", "息肉", "Ölbild 1"]) and ds.verify() == []
    got, out, _ = m2s(capsys, "data", "verify", "polyp-train", "--root", tmp_path / "données", "--deep")
    assert got == 0 and "OK" in out


def test_missing_and_layoutless_data_roots(tmp_path, capsys):
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", tmp_path / "nope", "--out", tmp_path / "r",
                  *TRAIN_SMALL)  # fmt: skip
    assert "nope" in msg and "does not exist" in msg
    (tmp_path / "flat").mkdir()
    png(tmp_path / "flat" / "a.png", rgb())
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", tmp_path / "flat", "--out", tmp_path / "r",
                  *TRAIN_SMALL)  # fmt: skip
    assert "images/ + masks/" in msg and "m2s data synth" in msg


# ---------------------------------------------------------------------------------------------------------------
# Archives (m2s data download --source)
# ---------------------------------------------------------------------------------------------------------------

ARCHIVE_WORDS = {
    "truncated zip": ("truncated", "download it again"),
    "truncated tar.gz": ("truncated", "download it again"),
    "tar with ../ member": ("escaped.txt", "outside"),
    "tar with absolute member": ("absolute.txt", "outside"),
    "plain tar with ../ member": ("escaped.txt", "outside"),
    "zip with ../ member": ("escaped.txt", "outside"),
    "zip with absolute member": ("absolute.txt", "outside"),
    "text file": ("cannot unpack", "--source"),
    "html page": ("web page", "browser"),
}


@pytest.mark.parametrize("kind", list(ARCHIVE_WORDS))
def test_bad_archive_is_one_line_and_nothing_escapes(kind, tmp_path, capsys):
    archive = _archive(kind, tmp_path)
    root = tmp_path / "data"
    root.mkdir()
    (root / "keep.txt").write_text("user file")
    before = digests(archive, root)
    msg = refused(capsys, "data", "download", "polyp-test", "--root", root, "--source", archive, "--quiet")
    assert archive.name in msg, msg
    for word in ARCHIVE_WORDS[kind]:
        assert word in msg, (kind, msg)
    assert digests(archive, root) == before
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]  # no half-unpacked folder left behind
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "absolute.txt").exists()


def test_missing_source_and_present_data(tmp_path, capsys):
    msg = refused(capsys, "data", "download", "polyp-test", "--root", tmp_path / "d", "--source", tmp_path / "no.zip")
    assert "no.zip" in msg and "does not exist" in msg
    root = _test_set_tree(tmp_path / "have")
    before = digests(root)
    got, out, _ = m2s(capsys, "data", "download", "polyp-test", "--root", root, "--source",
                      _zip(_test_set_tree(tmp_path / "src"), tmp_path / "t.zip"), "--quiet")  # fmt: skip
    assert got == 0 and "already in" in out and "--force" in out
    assert digests(root) == before


def test_verify_of_an_empty_folder(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    got, out, _ = m2s(capsys, "data", "verify", "polyp", "--root", tmp_path / "d")
    assert got == 1 and "NOT OK" in out and "m2s data download polyp-train" in out
