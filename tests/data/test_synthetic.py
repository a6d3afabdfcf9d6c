"""Synthetic datasets: layouts, loading, determinism, realism checks, idempotent generation."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from m2s_lib.constants import POLYP_TEST_SETS
from m2s_lib.data import (
    GOALS_CLASS_VALUES,
    SegmentationFolder,
    busi_folds,
    find_test_sets,
    resolve_train_root,
)
from m2s_lib.data import synthetic as S
from m2s_lib.data.synthetic import polyp
from m2s_lib.teaching.viz import gallery


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != S.MANIFEST}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """One small dataset per task (module-wide: generated once)."""
    base = tmp_path_factory.mktemp("synth")
    S.generate("polyp", base / "polyp", n=8, size=96, n_test=3, progress=False, workers=1)
    S.generate("busi", base / "busi", n=12, size=80, progress=False, workers=1)
    S.generate("covid", base / "covid", n=6, size=80, n_test=2, progress=False, workers=1)
    S.generate("oct", base / "oct", n=6, size=88, n_test=2, progress=False, workers=1)
    return base


def _count(folder: Path) -> tuple[int, int]:
    return len(list((folder / "images").iterdir())), len(list((folder / "masks").iterdir()))


def test_polyp_layout_counts_and_loading(synth_root):
    root = synth_root / "polyp"
    assert _count(root / "TrainDataset") == (8, 8)
    sets = find_test_sets(root)
    assert list(sets) == sorted(POLYP_TEST_SETS)
    for path in sets.values():
        assert _count(path) == (3, 3)
    train = SegmentationFolder(resolve_train_root(root), size=64)
    assert len(train) == 8 and train.names == [f"{i:05d}" for i in range(1, 9)]
    fg = 0.0
    for item in train:
        img, mask = item["image"], item["mask"]
        assert img.dtype == torch.float32 and img.shape == (3, 64, 64)
        assert -2.2 < float(img.min()) and float(img.max()) < 2.7  # ImageNet-normalised [0, 1] values
        assert mask.dtype == torch.float32 and mask.shape == (1, 64, 64)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert item["size"] in {(96, 96), (72, 96)}  # Kvasir-style square or CVC-ClinicDB-style 4:3 frames
        fg += float(mask.mean())
    assert fg > 0  # polyps present
    # test sets keep the imitated datasets' aspect ratios (original size is returned for write-back)
    clinic = SegmentationFolder(sets["CVC-ClinicDB"], size=64)[0]
    assert clinic["size"] == (72, 96)
    assert SegmentationFolder(sets["Kvasir"], size=64)[0]["size"] == (96, 96)
    # masks on disk are 0/255 PNGs, images RGB JPEGs
    from PIL import Image

    m = np.asarray(Image.open(next((root / "TrainDataset" / "masks").iterdir())))
    assert m.dtype == np.uint8 and set(np.unique(m).tolist()) <= {0, 255}
    assert Image.open(next((root / "TrainDataset" / "images").iterdir())).mode == "RGB"


def test_busi_layout_classes_and_folds(synth_root):
    root = synth_root / "busi"
    assert _count(root) == (12, 12)
    with open(root / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    classes = {r["name"]: r["class"] for r in rows}
    assert len(classes) == 12 and set(classes.values()) == set(S.BUSI_CLASSES)
    ds = SegmentationFolder(root, size=64)
    for item in ds:
        area = float(item["mask"].mean())
        if classes[item["name"]] == "normal":
            assert area == 0.0
        else:
            assert area > 0.0
    folds = busi_folds(root, k=4, seed=0)
    tests = [set(t) for _, t in folds]
    assert set().union(*tests) == set(classes) and sum(len(t) for t in tests) == 12


def test_covid_and_oct_layouts(synth_root):
    covid = synth_root / "covid"
    assert _count(covid / "TrainDataset") == (6, 6)
    assert list(find_test_sets(covid)) == ["COVID-19"]
    ds = SegmentationFolder(covid, "TrainDataset", size=64)
    assert sum(float(it["mask"].sum()) for it in ds) > 0
    oct_ = synth_root / "oct"
    assert list(find_test_sets(oct_)) == ["GOALS"]
    ds = SegmentationFolder(oct_, "TrainDataset", size=64, classes=4, class_values=GOALS_CLASS_VALUES)
    item = ds[0]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (64, 64)
    assert set(item["mask"].unique().tolist()) == {0, 1, 2, 3}
    assert item["size"] == (64, 88)  # H = round(W * 800 / 1100), the GOALS aspect
    from PIL import Image

    raw = np.asarray(Image.open(ds.mask_paths[0]))
    assert set(np.unique(raw).tolist()) == {0, 80, 160, 255}
    # layer order from the top of each column: RNFL (0) above GCIPL (80) above choroid (160)
    col = raw[:, raw.shape[1] // 2]
    first = {v: int(np.argmax(col == v)) for v in (0, 80, 160)}
    assert first[0] < first[80] < first[160]


def test_deterministic_by_seed_whatever_the_workers(tmp_path):
    a = S.generate("polyp", tmp_path / "a", n=4, size=64, n_test=1, seed=3, progress=False, workers=1)
    b = S.generate("polyp", tmp_path / "b", n=4, size=64, n_test=1, seed=3, progress=False, workers=2)
    c = S.generate("polyp", tmp_path / "c", n=4, size=64, n_test=1, seed=4, progress=False, workers=1)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db  # same seed: identical bytes, also across process counts
    assert set(da) == set(dc)
    assert sum(da[k] != dc[k] for k in da if "/images/" in k) == len([k for k in da if "/images/" in k])


@pytest.mark.parametrize("sampler", ["busi", "covid", "oct"])
def test_other_tasks_deterministic_and_seed_dependent(sampler):
    def make(seed):
        rng = np.random.default_rng(seed)
        if sampler == "busi":
            return S.busi_sample(rng, 64, "malignant")
        return getattr(S, f"{sampler}_sample")(rng, 64)

    a, b, c = make(1), make(1), make(2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint8 and a[1].dtype == np.uint8


def _best_threshold_dice(images, masks) -> tuple[float, float]:
    """Best Dice of a single global threshold on one channel (R, G, B or gray, either polarity) over the whole set,
    and the mean over images of the best threshold chosen per image (an oracle)."""
    best_global, best_oracle = 0.0, 0.0
    for ch in range(4):
        for polarity in (1, -1):
            curves = []
            for im, m in zip(images, masks):
                x = np.round(im.mean(2) if ch == 3 else im[..., ch]).astype(int)
                hp = np.bincount(x[m], minlength=256)
                ha = np.bincount(x.ravel(), minlength=256)
                tp = hp[::-1].cumsum()[::-1] if polarity == 1 else hp.cumsum()
                pp = ha[::-1].cumsum()[::-1] if polarity == 1 else ha.cumsum()
                curves.append(2 * tp / (pp + m.sum() + 1e-9))
            curves = np.asarray(curves)
            best_global = max(best_global, float(curves.mean(0).max()))
            best_oracle = max(best_oracle, float(curves.max(1).mean()))
    return best_global, best_oracle


@pytest.mark.parametrize("style", ["Kvasir", "ETIS-LaribPolypDB"])
def test_polyp_is_not_a_colour_threshold(style):
    images, masks = [], []
    for i in range(16):
        im, m = S.polyp_sample(np.random.default_rng([11, i]), 128, S.POLYP_STYLES[style])
        images.append(im)
        masks.append(m > 0)
    best_global, best_oracle = _best_threshold_dice(images, masks)
    assert best_global < 0.6
    assert best_oracle < 0.6


def test_teaching_difficulty_makes_polyps_stand_out(tmp_path):
    for name, style in S.POLYP_STYLES.items():
        easy = S.polyp_style(name, "teaching")
        assert easy.contrast == pytest.approx(style.contrast * polyp.TEACHING_CONTRAST_GAIN)
        assert easy.area[0] >= polyp.TEACHING_MIN_AREA and easy.area[1] >= style.area[1]
        assert (easy.aspect, easy.frame, easy.blur, easy.tint) == (style.aspect, style.frame, style.blur, style.tint)
        assert S.polyp_style(name) == style
    with pytest.raises(S.SyntheticDataError, match="unknown difficulty 'hard': choose one of realistic, teaching"):
        S.polyp_style("Kvasir", "hard")
    # measurably easier: the best colour threshold separates teaching polyps better than realistic ones
    scores = {}
    for level in S.DIFFICULTIES:
        pairs = [S.polyp_sample(np.random.default_rng([11, i]), 128, S.polyp_style("Kvasir", level)) for i in range(16)]
        scores[level] = _best_threshold_dice([im for im, _ in pairs], [m > 0 for _, m in pairs])[0]
    assert scores["teaching"] > scores["realistic"] + 0.05, scores


def test_difficulty_is_recorded_and_never_mixed_up(tmp_path):
    root = tmp_path / "p"
    assert S.ensure_dataset("polyp", root, n=2, size=48, n_test=1, difficulty="teaching", progress=False) == (
        root, "synthetic")
    assert json.loads((root / S.MANIFEST).read_text())["difficulty"] == "teaching"
    with pytest.raises(S.SyntheticDataError, match=r"difficulty='teaching' \(asked 'realistic'\)"):
        S.ensure_synthetic("polyp", root, n=2, size=48, n_test=1, progress=False)
    # manifests written before the setting existed hold realistic data
    old = tmp_path / "old"
    S.ensure_synthetic("polyp", old, n=2, size=48, n_test=1, progress=False)
    manifest = json.loads((old / S.MANIFEST).read_text())
    del manifest["difficulty"]
    (old / S.MANIFEST).write_text(json.dumps(manifest))
    assert S.ensure_synthetic("polyp", old, n=2, size=48, n_test=1, progress=False) == old
    # a folder without a manifest is somebody's real data: used as it is, nothing written
    real = tmp_path / "real"
    (real / "TrainDataset").mkdir(parents=True)
    assert S.ensure_dataset("polyp", real, n=2) == (real, "real") and len(list(real.iterdir())) == 1
    assert S.dataset_name("polyp", 400, 20, 0, 128, "teaching") == "synthetic-polyp-n400-t20-s0-128px-teaching"
    assert S.dataset_name("covid", 400, 20, 0, 128, "teaching") == "synthetic-covid-n400-t20-s0-128px"


def test_polyp_size_count_and_test_set_statistics():
    def areas(style, k=40):
        out, counts = [], []
        for i in range(k):
            _, m = S.polyp_sample(np.random.default_rng([21, i]), 96, S.POLYP_STYLES[style])
            from scipy import ndimage as ndi

            out.append((m > 0).mean())
            counts.append(ndi.label(m > 0, structure=np.ones((3, 3)))[1])
        return np.asarray(out), np.asarray(counts)

    kv, kv_n = areas("Kvasir")
    et, _ = areas("ETIS-LaribPolypDB")
    assert kv.min() < 0.03 and kv.max() > 0.12  # small to large polyps
    assert np.median(et) < np.median(kv)  # ETIS: smaller polyps, as in the real sets
    assert kv_n.max() >= 2 and kv_n.max() <= 4  # several polyps sometimes (two can touch the frame edge)


def test_ensure_synthetic_is_idempotent_and_never_clobbers(tmp_path):
    root = tmp_path / "ds"
    S.ensure_synthetic("covid", root, n=2, size=48, n_test=1, progress=False)
    before = _digest(root)
    mtime = (root / S.MANIFEST).stat().st_mtime_ns
    assert S.ensure_synthetic("covid", root, n=2, size=48, n_test=1, progress=False) == root
    assert _digest(root) == before and (root / S.MANIFEST).stat().st_mtime_ns == mtime
    with pytest.raises(S.SyntheticDataError, match=r"other parameters: n=2 \(asked 3\).*another root"):
        S.ensure_synthetic("covid", root, n=3, size=48, n_test=1, progress=False)
    assert _digest(root) == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(S.SyntheticDataError, match="mine.*not a synthetic dataset"):
        S.ensure_synthetic("polyp", foreign, n=2, size=48, progress=False)
    with pytest.raises(S.SyntheticDataError, match="not empty"):
        S.generate("polyp", foreign, n=2, size=48, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    # a deleted file is detected instead of silently returning a broken dataset
    next((root / "TrainDataset" / "images").iterdir()).unlink()
    with pytest.raises(S.SyntheticDataError, match="changed since it was written"):
        S.ensure_synthetic("covid", root, n=2, size=48, n_test=1, progress=False)
    with pytest.raises(S.SyntheticDataError, match="unknown task"):
        S.generate("liver", tmp_path / "x", n=2)


def test_gallery_and_mask_statistics(synth_root):
    from matplotlib.figure import Figure

    fig = gallery(synth_root / "polyp", n=6, seed=0)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    fig_oct = gallery(synth_root / "oct", n=2)
    assert len(fig_oct.axes) == 2
    stats = S.mask_statistics(synth_root / "polyp")
    assert list(stats.columns) == ["split", "name", "height", "width", "area_fraction", "components"]
    assert len(stats) == 8 + 5 * 3
    assert stats["area_fraction"].between(0, 1).all() and (stats["components"] >= 0).all()
    assert set(stats["split"]) == {"TrainDataset", *(f"TestDataset/{s}" for s in POLYP_TEST_SETS)}


def test_cli_synth_writes_the_asked_difficulty_once(tmp_path, capsys):
    from m2s_lib.cli import main

    out = tmp_path / "teach"
    args = ["data", "synth", "--task", "polyp", "--n", "2", "--size", "48", "--n-test", "1", "--quiet",
            "--difficulty", "teaching", "--out", str(out)]  # fmt: skip
    assert main(args) == 0 and "wrote synthetic polyp dataset" in capsys.readouterr().out
    assert json.loads((out / S.MANIFEST).read_text())["difficulty"] == "teaching"
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out
