"""Hostile inputs on the engine side: a zip-bomb checkpoint, a decompression bomb in a folder to predict, one huge
image to predict, and checkpoints whose task does not fit the data or `--task`. Peak memory is measured in a child
process and must stay under 2 GB (a watchdog stops the child at 2.5 GB)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_support import GB, LIMIT, big_png, run_measured  # child-process peak-RSS watchdog
from PIL import Image

from m2s_lib.constants import GOALS_CLASS_VALUES


def tiny_checkpoint(path: Path, oct: bool = False) -> Path:
    """A training checkpoint of an untrained small m2snet (resnet18d, 16 channels, 64 px): binary polyp, or the
    4-class GOALS OCT task."""
    from m2s_lib.config import get_profile
    from m2s_lib.engine.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from m2s_lib.model import build_model

    cfg = get_profile("tiny")
    for key, value in {"model.channels": 16, "model.encoder_name": "resnet18d", "model.encoder_weights": None,
                       "data.size": 64, "data.train_sizes": [64], "data.test_size": 64}.items():
        cfg.set(key, value)
    if oct:
        cfg.set("data.task", "oct")
        cfg.set("model.classes", 4)
        cfg.set("data.class_values", list(GOALS_CLASS_VALUES))
    torch.manual_seed(0)
    model = build_model(cfg.model.name, **cfg.model.build_kwargs(weights=False))
    save_checkpoint({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "model": model.state_dict(), "epoch": 1},
                    path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt")


@pytest.fixture(scope="module")
def oct_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "oct.pt", oct=True)


@pytest.fixture(scope="module")
def polyp(tmp_path_factory) -> Path:
    from m2s_lib.data.synthetic import generate

    return generate("polyp", tmp_path_factory.mktemp("data") / "polyp", n=2, seed=1, size=48, n_test=1,
                    progress=False, workers=1)  # fmt: skip


def m2s(capsys, *args) -> tuple[int, str]:
    from m2s_lib.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return int(code or 0), err


def one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"m2s {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Zip-bomb checkpoint
# ---------------------------------------------------------------------------------------------------------------
def zip_bomb_checkpoint(path: Path, inflated: int = 2 * GB) -> Path:
    """A torch checkpoint whose one tensor record is replaced by ``inflated`` bytes of zeros, deflated (~2 MB)."""
    buf = io.BytesIO()
    torch.save({"format": "m2s-checkpoint/1", "weights": torch.zeros(4)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if "/data/" in info.filename and not info.filename.endswith(".pkl"):
                zi = zipfile.ZipInfo(info.filename)
                zi.compress_type = zipfile.ZIP_DEFLATED
                with dst.open(zi, "w", force_zip64=True) as fh:
                    block = bytes(64 << 20)
                    for _ in range(inflated // len(block)):
                        fh.write(block)
            else:
                dst.writestr(info, src.read(info.filename))
    return path


def test_zip_bomb_checkpoint_is_refused_before_reading(tmp_path):
    bomb = zip_bomb_checkpoint(tmp_path / "bomb.pt")
    assert bomb.stat().st_size < 8 << 20
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    res = run_measured(["-m", "m2s_lib.cli", "predict", "--checkpoint", str(bomb), str(tmp_path / "a.png"),
                        "--out", str(tmp_path / "pred"), "--no-progress"], cwd=tmp_path)  # fmt: skip
    print(f"peak RSS, zip-bomb checkpoint: {res['peak'] / GB:.2f} GB")
    assert not res["killed"] and res["peak"] < LIMIT, res["peak"] / GB  # was 3.1 GB
    assert res["rc"] == 1 and "Traceback" not in res["err"], res["err"]
    line = one_error_line(res["err"], "predict")
    assert "bomb.pt" in line and "declares" in line, line


def test_ordinary_checkpoints_pass_the_size_check(ckpt):
    from m2s_lib.engine.checkpoint import load_checkpoint

    assert load_checkpoint(ckpt)["epoch"] == 1


# ---------------------------------------------------------------------------------------------------------------
# Predicting bombs and huge images
# ---------------------------------------------------------------------------------------------------------------
def test_predict_folder_with_a_decompression_bomb_skips_it_and_predicts_the_rest(ckpt, tmp_path, capsys):
    folder = tmp_path / "in"
    big_png(folder / "bomb.png", 20000, 20000, rgb=False)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "good.png")
    code, err = m2s(capsys, "predict", "--checkpoint", ckpt, folder, "--out", tmp_path / "pred", "--no-progress")
    assert code == 1, err  # was: a DecompressionBombError traceback, nothing predicted
    assert "bomb.png" in one_error_line(err, "predict")
    assert (tmp_path / "pred" / "masks" / "good.png").is_file()
    skipped = (tmp_path / "pred" / "skipped.csv").read_text()
    assert "bomb.png" in skipped and "pixels" in skipped


def test_predict_skips_a_file_of_a_type_training_does_not_read(ckpt, tmp_path, capsys):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "a.gif")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "b.webp")
    code, err = m2s(capsys, "predict", "--checkpoint", ckpt, tmp_path / "a.gif", tmp_path / "b.webp", "--out",
                    tmp_path / "pred", "--no-progress")
    assert code == 1 and "a.gif" in one_error_line(err, "predict"), err
    assert (tmp_path / "pred" / "masks" / "b.png").is_file() and not (tmp_path / "pred" / "masks" / "a.png").exists()
    assert "image types" in (tmp_path / "pred" / "skipped.csv").read_text()


def test_predicting_one_10000_pixel_png_stays_under_2_gb(ckpt, tmp_path):
    big_png(tmp_path / "huge.png", 10000, 10000)
    res = run_measured(["-m", "m2s_lib.cli", "predict", "--checkpoint", str(ckpt), str(tmp_path / "huge.png"),
                        "--out", str(tmp_path / "pred"), "--no-progress"], cwd=tmp_path)  # fmt: skip
    print(f"peak RSS predicting a 10000x10000 PNG: {res['peak'] / GB:.2f} GB")
    assert not res["killed"] and res["peak"] < LIMIT, res["peak"] / GB  # was > 5 GB
    assert res["rc"] == 0, res["err"]
    with Image.open(tmp_path / "pred" / "masks" / "huge.png") as m:
        assert m.size == (10000, 10000)


def _big_test_set(root: Path, side: int) -> Path:
    big_png(root / "TestDataset" / "Big" / "images" / "a.png", side, side)
    big_png(root / "TestDataset" / "Big" / "masks" / "a.png", side, side, rgb=False)
    return root


def test_evaluating_a_10000_pixel_test_image_is_refused_under_2_gb(ckpt, tmp_path):
    data = _big_test_set(tmp_path / "data", 10000)
    res = run_measured(["-m", "m2s_lib.cli", "evaluate", "--checkpoint", str(ckpt), "--data-root", str(data),
                        "--out", str(tmp_path / "ev"), "--no-progress"], cwd=tmp_path)  # fmt: skip
    print(f"peak RSS evaluating a 10000x10000 test image: {res['peak'] / GB:.2f} GB")
    assert not res["killed"] and res["peak"] < LIMIT, res["peak"] / GB  # was killed at 2.5 GB
    assert res["rc"] == 1, res["err"]
    line = one_error_line(res["err"], "evaluate")
    assert "a.png" in line and "pixels" in line, line
    assert not (tmp_path / "ev").exists()


def test_evaluating_a_test_image_just_under_the_limit_stays_under_2_gb(ckpt, tmp_path):
    from m2s_lib.engine.evaluate import EVAL_MAX_PIXELS

    side = int(EVAL_MAX_PIXELS**0.5) - 1
    data = _big_test_set(tmp_path / "data", side)
    res = run_measured(["-m", "m2s_lib.cli", "evaluate", "--checkpoint", str(ckpt), "--data-root", str(data),
                        "--out", str(tmp_path / "ev"), "--no-progress"], cwd=tmp_path)  # fmt: skip
    print(f"peak RSS evaluating a {side}x{side} test image: {res['peak'] / GB:.2f} GB")
    assert not res["killed"] and res["rc"] == 0, res["err"]
    assert res["peak"] < LIMIT, res["peak"] / GB


def test_large_prediction_matches_the_one_shot_upsampling():
    from m2s_lib.engine.predict import upsampled_rows

    torch.manual_seed(0)
    logits = torch.randn(1, 1, 11, 13)
    full = torch.sigmoid(torch.nn.functional.interpolate(logits, size=(301, 257), mode="bilinear",
                                                         align_corners=False))[0, 0].numpy()
    rows = np.concatenate([p for _, p in upsampled_rows(logits[0], 301, 257, rows=64)], axis=0)
    assert rows.shape == (301, 257) and np.abs(rows - full).max() < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Task mismatches between a checkpoint, --task and the data
# ---------------------------------------------------------------------------------------------------------------
def test_four_class_oct_checkpoint_on_polyp_masks_is_refused(oct_ckpt, polyp, tmp_path, capsys):
    code, err = m2s(capsys, "evaluate", "--checkpoint", oct_ckpt, "--data-root", polyp, "--out", tmp_path / "ev",
                    "--no-progress")
    assert code == 1, err  # was: scored, 0 read as RNFL
    line = one_error_line(err, "evaluate")
    assert "polyp" in line and "4 classes" in line, line


def test_binary_checkpoint_with_task_oct_is_refused(ckpt, polyp, tmp_path, capsys):
    code, err = m2s(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", polyp, "--out", tmp_path / "ev",
                    "--task", "oct", "--no-progress")
    assert code == 1, err  # was: polyp metrics labelled oct
    line = one_error_line(err, "evaluate")
    assert "--task oct" in line and "binary" in line, line


def test_oct_checkpoint_with_task_polyp_is_refused(oct_ckpt, polyp, tmp_path, capsys):
    code, err = m2s(capsys, "evaluate", "--checkpoint", oct_ckpt, "--data-root", polyp, "--out", tmp_path / "ev",
                    "--task", "polyp", "--no-progress")
    assert code == 1, err
    assert "--task polyp" in one_error_line(err, "evaluate")


def test_binary_checkpoint_on_polyp_data_still_evaluates(ckpt, polyp, tmp_path, capsys):
    code, err = m2s(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", polyp, "--out", tmp_path / "ev",
                    "--no-progress")
    assert code == 0, err
