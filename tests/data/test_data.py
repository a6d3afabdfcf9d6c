"""SegmentationFolder on messy and broken folders, transforms, multi-scale collate, splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m2s_lib.constants import IMAGENET_MEAN, IMAGENET_STD, TRAIN_SIZES
from m2s_lib.data import (
    DatasetError,
    MultiScaleCollate,
    SegmentationFolder,
    busi_folds,
    collate,
    default_clip_of,
    find_test_sets,
    resolve_train_root,
    train_sizes_for,
    video_clip_split,
)


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


def _rgb(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write_pair(folder: Path, stem: str, h=40, w=50, image_ext=".png", mask_ext=".png"):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(h, w)).save(folder / "images" / f"{stem}{image_ext}")
    Image.fromarray(_disk(h, w, h / 2, w / 2, min(h, w) / 4).astype(np.uint8) * 255).save(
        folder / "masks" / f"{stem}{mask_ext}")


# ---------------------------------------------------------------------------------------------------------------
# The messy folder
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture()
def messy(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """JPEG images of several sizes, JPEG masks with compression noise, upper-case extensions, a stray hidden file,
    a grayscale, an RGBA, a palette and a 16-bit image, a 16-bit mask, singular image/ and mask/ folders."""
    root = tmp_path / "messy"
    img_dir, mask_dir = root / "image", root / "mask"
    img_dir.mkdir(parents=True)
    mask_dir.mkdir()
    truth: dict[str, np.ndarray] = {}

    def mask_of(h, w, k):
        return _disk(h, w, h * 0.5, w * (0.3 + 0.1 * k), min(h, w) * 0.25)

    sizes = {"a": (60, 80), "b": (90, 70), "c": (45, 45), "d": (64, 96), "e": (50, 60), "f": (72, 72), "g": (33, 47)}
    for k, (stem, (h, w)) in enumerate(sizes.items()):
        m = mask_of(h, w, k)
        truth[stem] = m
        rgb = _rgb(h, w, seed=k)
        if stem == "a":  # JPEG image, JPEG mask with compression noise
            Image.fromarray(rgb).save(img_dir / "a.jpg", quality=85)
            Image.fromarray(m.astype(np.uint8) * 255).save(mask_dir / "a.jpg", quality=60)
        elif stem == "b":  # upper-case extensions
            Image.fromarray(rgb).save(img_dir / "b.JPG", format="JPEG")
            Image.fromarray(m.astype(np.uint8) * 255).save(mask_dir / "b.PNG", format="PNG")
        elif stem == "c":  # grayscale image, .jpeg
            Image.fromarray(rgb[..., 0]).save(img_dir / "c.jpeg")
            Image.fromarray(m.astype(np.uint8) * 255).save(mask_dir / "c.bmp")
        elif stem == "d":  # RGBA image, 16-bit mask (0 / 65535)
            Image.fromarray(np.dstack([rgb, np.full((h, w), 128, np.uint8)])).save(img_dir / "d.png")
            Image.fromarray(m.astype(np.uint16) * 65535).save(mask_dir / "d.png")
        elif stem == "e":  # palette image, TIFF mask
            Image.fromarray(rgb).convert("P").save(img_dir / "e.png")
            Image.fromarray(m.astype(np.uint8) * 255).save(mask_dir / "e.TIF")
        elif stem == "f":  # 16-bit grayscale image; RGB mask with a coloured (red) foreground
            Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(img_dir / "f.png")
            red = np.zeros((h, w, 3), np.uint8)
            red[m] = (200, 0, 0)
            Image.fromarray(red).save(mask_dir / "f.png")
        else:  # 16-bit mask holding 0/255 values; .tiff image
            Image.fromarray(rgb).save(img_dir / "g.tiff")
            Image.fromarray(m.astype(np.uint16) * 255).save(mask_dir / "g.png")
    # stray files that must be ignored
    (img_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (img_dir / "._a.jpg").write_bytes(b"AppleDouble")
    (mask_dir / "Thumbs.db").write_bytes(b"junk")
    (img_dir / "notes.txt").write_text("not an image")
    return root, truth


def test_messy_folder_loads_correctly(messy):
    root, truth = messy
    ds = SegmentationFolder(root, size=48)
    assert len(ds) == len(truth) and ds.names == sorted(truth)
    assert [p.stem for p in ds.image_paths] == ds.names == [p.stem for p in ds.mask_paths]
    for i, name in enumerate(ds.names):
        image, mask = ds.load_pair(i)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) <= {0, 1}
        agree = (mask.astype(bool) == truth[name]).mean()
        assert agree > 0.99, (name, agree)  # JPEG noise removed by the 128 threshold
        item = ds[i]
        assert item["name"] == name and item["size"] == truth[name].shape
        assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 48, 48) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["mask"].sum() > 0
    # grayscale and 16-bit images become RGB with equal channels
    c_img, _ = ds.load_pair(ds.names.index("c"))
    f_img, _ = ds.load_pair(ds.names.index("f"))
    assert np.array_equal(c_img[..., 0], c_img[..., 2]) and np.array_equal(f_img[..., 0], f_img[..., 1])
    assert f_img.max() > 200  # 16-bit scaled to 8 bits, not clipped or wrapped
    batch = collate([ds[0], ds[1]])
    assert batch["size"].dtype == torch.long and batch["size"].tolist() == [list(truth["a"].shape),
                                                                           list(truth["b"].shape)]


def test_normalisation_is_imagenet(tmp_path):
    folder = tmp_path / "one"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(folder / "images" / "x.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / "x.png")
    img = SegmentationFolder(folder, size=8)[0]["image"]
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(img[:, 0, 0], torch.tensor(expected), atol=1e-5)


def test_split_argument_and_layout_helpers(tmp_path):
    root = tmp_path / "polyp"
    _write_pair(root / "TrainDataset", "t1")
    for name in ("Kvasir", "CVC-300"):
        _write_pair(root / "TestDataset" / name, "x1")
    (root / "TestDataset" / "empty_notes").mkdir()
    assert len(SegmentationFolder(root, split="TrainDataset")) == 1
    assert len(SegmentationFolder(root, split="TestDataset/Kvasir")) == 1
    assert resolve_train_root(root) == root / "TrainDataset"
    assert resolve_train_root(root / "TrainDataset") == root / "TrainDataset"
    sets = find_test_sets(root)
    assert sets == {"CVC-300": root / "TestDataset" / "CVC-300", "Kvasir": root / "TestDataset" / "Kvasir"}
    assert find_test_sets(root / "TestDataset") == sets
    assert find_test_sets(root / "TestDataset" / "Kvasir") == {"Kvasir": root / "TestDataset" / "Kvasir"}


def test_multiclass_labels_and_unknown_value(tmp_path):
    folder = tmp_path / "oct"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    label = np.full((20, 30), 255, np.uint8)
    label[2:5], label[5:8], label[12:16] = 0, 80, 160
    Image.fromarray(_rgb(20, 30)).save(folder / "images" / "s1.png")
    Image.fromarray(label).save(folder / "masks" / "s1.png")
    ds = SegmentationFolder(folder, size=30, classes=4, class_values=(255, 0, 80, 160))
    mask = ds[0]["mask"]
    assert mask.dtype == torch.int64 and mask.shape == (30, 30)
    assert set(mask.unique().tolist()) == {0, 1, 2, 3}
    ids = ds.load_pair(0)[1]
    assert (ids[3] == 1).all() and (ids[6] == 2).all() and (ids[13] == 3).all() and (ids[0] == 0).all()
    label[0, 0] = 42
    Image.fromarray(label).save(folder / "masks" / "s1.png")
    with pytest.raises(DatasetError, match=r"s1.png: label values \[42\] are not in class_values"):
        ds[0]
    with pytest.raises(DatasetError, match="class_values"):
        SegmentationFolder(folder, classes=4)


def test_train_augmentation_moves_image_and_mask_together(tmp_path):
    folder = tmp_path / "aug"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    m = _disk(64, 64, 20, 40, 12) | _disk(64, 64, 48, 16, 7)  # asymmetric
    Image.fromarray(np.repeat(m[..., None].astype(np.uint8) * 255, 3, axis=2)).save(folder / "images" / "a.png")
    Image.fromarray(m.astype(np.uint8) * 255).save(folder / "masks" / "a.png")
    ds = SegmentationFolder(folder, size=64, train=True, rotation=10.0)
    test = SegmentationFolder(folder, size=64)[0]["mask"]
    white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    torch.manual_seed(0)
    changed = 0
    for _ in range(12):
        item = ds[0]
        img_fg = item["image"][0] > white / 2  # the image's white region after the same flip/rotation
        mask = item["mask"][0].bool()
        assert (img_fg == mask).float().mean() > 0.98
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        changed += int(not torch.equal(item["mask"], test))
    assert changed >= 10  # random flips/rotations happen


def test_seeded_augmentation_depends_only_on_seed_and_item(tmp_path):
    """After set_augment_seed, item i's flip and angle come from (seed, i): the same whatever was drawn before,
    in whichever order or worker; another seed or item gives other draws."""
    folder = tmp_path / "seeded"
    for k in range(3):
        _write_pair(folder, f"p{k}", h=48, w=48)
    ds = SegmentationFolder(folder, size=48, train=True, rotation=10.0)
    ds.set_augment_seed(7)
    first = ds[2]["image"]
    torch.rand(100)
    _ = ds[0], ds[1]
    assert torch.equal(ds[2]["image"], first)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    assert torch.equal([b["image"][0] for b in loader][2], first)
    draws = set()
    for seed in range(6):
        ds.set_augment_seed(seed)
        draws.add(ds[2]["image"].sum().item())
    assert len(draws) >= 5
    ds.set_augment_seed(None)  # back to the global generator: two reads differ
    assert not torch.equal(ds[2]["image"], ds[2]["image"])


def test_multiscale_collate_workers_draw_their_own_sizes(tmp_path):
    folder = tmp_path / "msw"
    for k in range(16):
        _write_pair(folder, f"p{k:02d}", h=32, w=32)
    ds = SegmentationFolder(folder, size=32)

    def sizes(seed):
        coll = MultiScaleCollate(sizes=tuple(range(8, 40, 2)), seed=seed)
        loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=coll)
        return [b["image"].shape[-1] for b in loader]

    run = sizes(3)
    assert run == sizes(3)  # reproducible for a given number of workers
    assert run[0::2] != run[1::2]  # the two workers do not repeat one sequence
    assert run != sizes(4)


def test_multiscale_collate_and_sizes(tmp_path):
    folder = tmp_path / "ms"
    for k in range(4):
        _write_pair(folder, f"p{k}", h=30 + k, w=40)
    ds = SegmentationFolder(folder, size=64, train=True)
    coll = MultiScaleCollate(sizes=(32, 48, 64), seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=coll)
    seen = set()
    for _ in range(6):
        for batch in loader:
            s = batch["image"].shape[-1]
            seen.add(s)
            assert batch["image"].shape == (2, 3, s, s) and batch["mask"].shape == (2, 1, s, s)
            assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
            assert batch["size"].dtype == torch.long and batch["size"].shape == (2, 2)
            assert isinstance(batch["name"], list) and len(batch["name"]) == 2
    assert seen <= {32, 48, 64} and len(seen) >= 2
    a = MultiScaleCollate(seed=5)
    b = MultiScaleCollate(seed=5)
    assert [a.pick() for _ in range(10)] == [b.pick() for _ in range(10)]
    assert set(MultiScaleCollate().sizes) == set(TRAIN_SIZES)
    # label masks stay integer class ids
    lab = [{"image": torch.zeros(3, 8, 8), "mask": torch.randint(0, 4, (8, 8)), "size": (8, 8), "name": "x"}]
    out = MultiScaleCollate(sizes=(16,))(lab)
    assert out["mask"].dtype == torch.int64 and out["mask"].shape == (1, 16, 16)


def test_train_sizes_for():
    assert train_sizes_for(352) == TRAIN_SIZES
    assert train_sizes_for(160) == (96, 112, 128, 144, 160)
    assert train_sizes_for(320) == (192, 224, 256, 288, 320)
    assert train_sizes_for(64) == (40, 48, 56, 64)  # multiples of 8, as the training config requires
    assert train_sizes_for(64, multiple=1) == (40, 48, 52, 60, 64)
    # never below the config's 32-px minimum, and the base itself always comes last
    assert train_sizes_for(40) == (32, 40) and train_sizes_for(32) == (32,)
    assert train_sizes_for(40, minimum=8) == (24, 32, 40)
    for base in (96, 128, 200, 256, 512):
        sizes = train_sizes_for(base)
        assert len(sizes) == 5 and sizes[-1] == base and list(sizes) == sorted(set(sizes))
        assert all(s % 8 == 0 for s in sizes)
        assert sizes[0] >= base * 0.5


# ---------------------------------------------------------------------------------------------------------------
# Broken folders: each error names the problem and what to do
# ---------------------------------------------------------------------------------------------------------------
def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError) as err:
        SegmentationFolder(tmp_path / "nowhere" / "TrainDataset")
    msg = str(err.value)
    assert "nowhere/TrainDataset does not exist" in msg
    assert f"m2s data synth --task polyp --n 1000 --out {tmp_path / 'nowhere'}" in msg
    assert f"m2s data download polyp --root {tmp_path / 'nowhere'}" in msg
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DatasetError, match=r"empty/images holds no images.*m2s data synth"):
        SegmentationFolder(tmp_path / "empty")
    (tmp_path / "nodirs" / "TrainDataset").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"nodirs has no images/ and masks/.*TrainDataset: pass one of them"):
        SegmentationFolder(tmp_path / "nodirs")
    with pytest.raises(DatasetError, match="no test sets"):
        find_test_sets(tmp_path / "nodirs")
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_train_root(tmp_path / "nowhere")


def test_unpaired_files_are_listed(tmp_path):
    folder = tmp_path / "unpaired"
    for k in range(14):
        _write_pair(folder, f"img{k:02d}")
    for k in range(12):
        (folder / "masks" / f"img{k:02d}.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "masks" / "orphan.png")
    with pytest.raises(DatasetError) as err:
        SegmentationFolder(folder)
    msg = str(err.value)
    assert "12 images in" in msg and "img00, img01" in msg and "img09 (and 2 more)" in msg
    assert "1 masks in" in msg and "have no image" in msg and "orphan" in msg


def test_duplicate_stems(tmp_path):
    folder = tmp_path / "dup"
    _write_pair(folder, "a")
    Image.fromarray(_rgb(4, 4)).save(folder / "images" / "a.jpg")
    with pytest.raises(DatasetError, match=r"share a name.*a\.jpg/a\.png"):
        SegmentationFolder(folder)


def test_unreadable_file_and_size_mismatch(tmp_path):
    folder = tmp_path / "bad"
    _write_pair(folder, "good")
    _write_pair(folder, "broken")
    _write_pair(folder, "small", h=40, w=50)
    (folder / "images" / "broken.png").write_bytes(b"this is not a png")
    Image.fromarray(np.zeros((20, 25), np.uint8)).save(folder / "masks" / "small.png")
    ds = SegmentationFolder(folder, size=32)
    assert ds[ds.names.index("good")]["mask"].sum() > 0
    with pytest.raises(DatasetError, match=r"cannot read .*images/broken\.png"):
        ds[ds.names.index("broken")]
    with pytest.raises(DatasetError) as err:
        ds[ds.names.index("small")]
    assert "masks/small.png is 25x20" in str(err.value) and "images/small.png is 50x40" in str(err.value)
    problems = ds.verify()
    assert len(problems) == 2


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------
def test_busi_folds_stratified_seeded(tmp_path):
    rows = [(f"benign_{i}", "benign") for i in range(40)] + [(f"malignant_{i}", "malignant") for i in range(20)] + \
           [(f"normal_{i}", "normal") for i in range(13)]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("name,class\n" + "".join(f"{n},{c}\n" for n, c in rows))
    folds = busi_folds(csv_path, k=4, seed=0)
    assert folds == busi_folds(tmp_path, k=4, seed=0) == busi_folds(rows, k=4, seed=0)
    assert len(folds) == 4
    tests = [set(t) for _, t in folds]
    assert set().union(*tests) == {n for n, _ in rows} and sum(map(len, tests)) == len(rows)
    for train, test in folds:
        assert not set(train) & set(test) and len(train) + len(test) == len(rows)
        assert 18 <= len(test) <= 19  # sizes differ by at most one
        for cls, total in (("benign", 40), ("malignant", 20), ("normal", 13)):
            n = sum(t.startswith(cls) for t in test)
            assert abs(n - total / 4) <= 1
    assert busi_folds(rows, k=4, seed=1) != folds
    with pytest.raises(DatasetError, match="labels.csv"):
        busi_folds(tmp_path / "missing")


def test_video_clip_split():
    names = [f"clip{c:02d}_{f:03d}" for c in range(12) for f in range(5)]
    train, val, test = video_clip_split(names, seed=0)
    clips = [{default_clip_of(n) for n in part} for part in (train, val, test)]
    assert [len(c) for c in clips] == [7, 2, 3]
    assert not (clips[0] & clips[1]) and not (clips[0] & clips[2]) and not (clips[1] & clips[2])
    assert sorted(train + val + test) == sorted(names)
    assert video_clip_split(names, seed=0) == (train, val, test)
    assert video_clip_split(names, seed=1) != (train, val, test)
    # a custom clip function, e.g. a folder per clip
    nested = [f"{c}/{f}" for c in "abcde" for f in range(3)]
    tr, va, te = video_clip_split(nested, clip_of=lambda n: n.split("/")[0])
    assert len(tr) == 9 and len(va) == 3 and len(te) == 3
    assert default_clip_of("case5-10") == "case5" and default_clip_of("frame0012") == "frame"


def test_jpeg_mask_noise_is_binarised(tmp_path):
    from m2s_lib.data import load_mask

    m = _disk(50, 50, 25, 25, 12)
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=50)
    noisy = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(noisy)) > 2  # the compression noise is real
    out = load_mask(tmp_path / "m.jpg")
    assert out.dtype == np.uint8 and set(np.unique(out).tolist()) == {0, 1}
    assert (out.astype(bool) == m).mean() > 0.995
