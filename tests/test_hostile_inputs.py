"""A corpus of hostile inputs, as a new user would try them: each case ends in the right exit code, one line that
names the file or setting and what to do, no Python traceback, and nothing the user already had is changed.

The cases go through the stable entry points: the ``m2s`` command (``m2s_lib.cli.main`` in-process, and a few real
``python -m m2s_lib.cli`` processes), the reproduction's ``main`` (``python -m m2s_lib.reproduce``) and the data
readers. Every file is
tiny (16-64 px) and every training run is one step of resnet18d from scratch, so the whole corpus takes seconds.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.cli import main as m2s_main

TRAIN_SMALL = ["data.size=64", "data.train_sizes=[64]", "optim.batch_size=4", "model.channels=16",
               "run.progress=false", "run.max_steps_per_epoch=1", "data.val_fraction=0"]  # fmt: skip
CKPT_SMALL = ["data.size=64", "data.train_sizes=[64]", "optim.batch_size=4", "model.channels=16",
              "run.progress=false", "run.max_steps_per_epoch=1", "data.val_fraction=0.25", "data.test_size=64"]


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def digests(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files or folders), keyed by path: what the user had."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _device_exists(name: str) -> bool:
    import torch

    from m2s_lib.engine.runtime import mps_available

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return False
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return device.type == "mps" and mps_available()


def absent_devices(names: list[str]) -> list:
    """Device names as parameters, skipped on a machine that has that device (a GPU machine, a Mac)."""
    return [pytest.param(n, marks=pytest.mark.skipif(_device_exists(n), reason=f"{n} exists here")) for n in names]


def m2s(capsys, *args) -> tuple[int, str, str]:
    """Run ``m2s ARGS`` in-process: (exit code, stdout, stderr); never a traceback."""
    try:
        code = m2s_main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return int(code or 0), out, err


def error_line(err: str, command: str) -> str:
    """The one error line of ``m2s COMMAND`` (exactly one, no traceback, not empty after the prefix)."""
    lines = [ln for ln in err.splitlines() if ln.startswith(f"m2s {command}: error:")]
    assert len(lines) == 1, err
    text = lines[0].split("error:", 1)[1].strip()
    assert text, err
    return text


def refused(capsys, command: str, *args, code: int = 1) -> str:
    got, _, err = m2s(capsys, command, *args)
    assert got == code, err
    return error_line(err, command.split()[0] if " " in command else command)


def png(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def disk(h: int = 32, w: int = 32, r: float = 8.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= r * r


def rgb(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pair_folder(root: Path, n: int = 3, size: int = 32, mask=lambda m: m.astype(np.uint8) * 255,
                image_ext: str = ".png", mask_ext: str = ".png") -> Path:
    for k in range(n):
        png(root / "images" / f"{k:03d}{image_ext}", rgb(size, size, k))
        png(root / "masks" / f"{k:03d}{mask_ext}", mask(disk(size, size, size / 4 + k)))
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from m2s_lib.data.synthetic import generate

    return generate("polyp", tmp_path_factory.mktemp("hostile") / "polyp", n=8, seed=3, size=64, n_test=2,
                    progress=False, workers=1)  # fmt: skip


@pytest.fixture(scope="module")
def ckpt(synth, tmp_path_factory) -> Path:
    """A tiny m2snet checkpoint trained for one step (resnet18d from scratch, 64 px)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert m2s_main(["train", "--profile", "tiny", "--data-root", str(synth), "--out", str(out), "--epochs", "1",
                     *CKPT_SMALL]) == 0  # fmt: skip
    return out / "best.pt"


# ---------------------------------------------------------------------------------------------------------------
# Image and mask files (the data layer)
# ---------------------------------------------------------------------------------------------------------------
def _bad_image_bytes(kind: str, tmp_path: Path) -> bytes:
    good = io.BytesIO()
    Image.fromarray(rgb()).save(good, format="PNG")
    return {"truncated": good.getvalue()[: len(good.getvalue()) // 2], "zero-byte": b"",
            "text": b"this is a text file, not a picture\n"}[kind]


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
    "RGB red": (lambda m: np.dstack([m.astype(np.uint8) * 200, np.zeros_like(m, np.uint8), np.zeros_like(m, np.uint8)]),
                ".png", {}),
    "RGBA white": (lambda m: np.dstack([np.repeat(m[..., None].astype(np.uint8) * 255, 3, 2),
                                        np.full(m.shape, 255, np.uint8)]), ".png", {}),
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


@pytest.mark.parametrize("values,words", [((0, 3), "read as empty"), ("gradient", "not a binary mask")])
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
# Training settings and runs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_images", [1, 2])
def test_too_few_images_for_one_step_is_refused(n_images, tmp_path, capsys):
    """Failure 2: 'epochs of 0 steps', loss 0, exit 0 and an untrained best.pt."""
    root = pair_folder(tmp_path / "d", n=n_images)
    args = [a for a in TRAIN_SMALL if not a.startswith("data.val_fraction")] + [
        f"data.val_fraction={0 if n_images == 1 else 0.5}", "optim.batch_size=8"]
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "2", *args)  # fmt: skip
    assert "batch" in msg and "1 training image" in msg
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("setting,words", [
    ("optim.lrr=0.1", "Did you mean 'optim.lr'?"),
    ("optim.batch_size=0", "optim.batch_size"),
    ("data.size=30", "data.size"),
    ("model.name=unet", "model.name"),
])
def test_bad_settings_are_named(setting, words, synth, tmp_path, capsys):
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", tmp_path / "r", setting)
    assert words in msg
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", absent_devices(["cuda", "cuda:1", "mps", "gpu"]))
def test_absent_device_for_train_names_the_option(device, synth, tmp_path, capsys):
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", tmp_path / "r", "--device",
                  device, *TRAIN_SMALL)  # fmt: skip
    assert repr(device) in msg and "--device cpu" in msg
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device", absent_devices(["cuda", "mps", "tpu", "gpu:0"]))
def test_notebook_device_choice_names_the_parameter(device):
    from m2s_lib.engine.runtime import DeviceError
    from m2s_lib.teaching.notebook_utils import pick_device

    with pytest.raises(DeviceError, match=r"^device '.*' .*: use device='auto' or 'cpu' in the parameters cell$"):
        pick_device(device)
    assert pick_device("cpu").type == "cpu"


def test_existing_run_is_kept_without_overwrite_and_resume_without_run(ckpt, synth, tmp_path, capsys):
    run = ckpt.parent
    before = digests(run)
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", run, *TRAIN_SMALL)
    assert "already holds a run" in msg and "--resume" in msg and "--overwrite" in msg
    assert digests(run) == before
    msg = refused(capsys, "train", "--out", tmp_path / "empty", "--resume")
    assert "no last.pt" in msg


def test_ctrl_c_says_how_to_resume(synth, tmp_path, capsys, monkeypatch):
    from m2s_lib.engine.trainer import Trainer

    original = Trainer.train_one_epoch

    def interrupted(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted)
    out = tmp_path / "run"
    got, _, err = m2s(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "2",
                      *TRAIN_SMALL)  # fmt: skip
    assert got == 130
    assert f"m2s train --out {out} --resume" in err, err
    assert (out / "last.pt").is_file()


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["junk text", "zero-byte", "truncated", "random bytes"])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_unreadable_checkpoint_is_one_line_without_unexplained_numbers(kind, command, ckpt, synth, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    data = {"junk text": b"junk text, not a checkpoint\n", "zero-byte": b"",
            "truncated": ckpt.read_bytes()[: ckpt.stat().st_size // 2],
            "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()}[kind]
    bad.write_bytes(data)
    before = digests(bad)
    if command == "evaluate":
        args = ["--checkpoint", bad, "--data-root", synth, "--out", tmp_path / "o", "--no-progress"]
    else:
        args = [synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", bad, "--out", tmp_path / "o",
                "--no-progress"]  # fmt: skip
    msg = refused(capsys, command, *args)
    assert str(bad) in msg and "checkpoint" in msg and ("last.pt" in msg or "best.pt" in msg)
    assert not any(word.strip(".,:;()'").isdigit() and len(word.strip(".,:;()'")) > 3 for word in msg.split()), msg
    assert digests(bad) == before and not (tmp_path / "o").exists()


def test_checkpoint_of_another_architecture_names_the_difference(ckpt, synth, tmp_path, capsys):
    msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "o",
                  "--model", "msnet", "--no-progress")  # fmt: skip
    assert "model.name" in msg and "'m2snet'" in msg and "'msnet'" in msg


def test_foreign_state_dict_is_not_the_authors_weights(tmp_path, synth, capsys):
    import torch

    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(4)}, foreign)
    msg = refused(capsys, "predict", synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", foreign, "--out",
                  tmp_path / "o", "--encoder", "resnet18d", "--no-progress")  # fmt: skip
    assert "neither an m2s training checkpoint nor the authors'" in msg and "resnet.pth" in msg


class _Payload:
    """A pickled object whose loading would run code (touch a file): weights_only loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, synth, capsys):
    import torch

    marker = tmp_path / "code_ran"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "m2s-checkpoint", "payload": _Payload(marker)}, bad)
    before = digests(bad)
    msg = refused(capsys, "predict", synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", bad, "--out",
                  tmp_path / "o", "--device", "cpu")  # fmt: skip
    assert "evil.pt" in msg and "not loaded, for safety" in msg
    assert not marker.exists() and digests(bad) == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "download", "synth"])
def test_output_path_that_is_a_file(command, ckpt, synth, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("my notes")
    before = digests(afile)
    args = {
        "train": ["train", "--profile", "tiny", "--data-root", synth, "--out", afile, "--epochs", "1", *TRAIN_SMALL],
        "evaluate": ["evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", afile, "--no-progress"],
        "predict": ["predict", synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", ckpt, "--out", afile,
                    "--no-progress"],
        "download": ["data", "download", "polyp-test", "--root", afile, "--source",
                     _zip(_test_set_tree(tmp_path / "src"), tmp_path / "t.zip"), "--quiet"],
        "synth": ["data", "synth", "--task", "polyp", "--n", "2", "--size", "32", "--out", afile, "--quiet"],
    }[command]
    got, _, err = m2s(capsys, *args)
    assert got == 1
    msg = error_line(err, args[0])
    assert "notes.txt" in msg and ("folder" in msg or "not a synthetic dataset" in msg) and "Errno" not in msg
    assert digests(afile) == before


def test_threshold_outside_zero_one_is_refused(ckpt, synth, tmp_path, capsys):
    msg = refused(capsys, "predict", synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", ckpt, "--out",
                  tmp_path / "o", "--threshold", "2")  # fmt: skip
    assert "--threshold" in msg and "between 0 and 1" in msg and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command, option, value, words", [
    ("evaluate", "--batch-size", "0", "at least 1 (got 0)"),
    ("evaluate", "--size", "0", "multiple of 8 and at least 32"),
    ("evaluate", "--size", "100", "multiple of 8 and at least 32"),
    ("predict", "--size", "-8", "multiple of 8 and at least 32"),
    ("profile", "--repeats", "0", "at least 1 (got 0)"),
    ("profile", "--size", "3x", "not a whole number"),
])
def test_numeric_options_out_of_range_name_the_option(command, option, value, words, ckpt, synth, tmp_path, capsys):
    """Refused by argparse before any work (exit 2), with the option and the rule in one line."""
    args = {
        "evaluate": ["--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "e"],
        "predict": [synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", ckpt, "--out", tmp_path / "p"],
        "profile": ["--encoder", "resnet18d", "--no-latency"],
    }[command]
    msg = refused(capsys, command, *args, option, value, code=2)
    assert msg.startswith(f"argument {option}:") and words in msg, msg
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()


def test_resume_from_a_junk_last_pt(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"not a checkpoint")
    before = digests(out)
    msg = refused(capsys, "train", "--out", out, "--resume")
    assert "last.pt" in msg
    assert digests(out) == before


# ---------------------------------------------------------------------------------------------------------------
# evaluate / predict: devices, inputs, output folders
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", absent_devices(["cuda", "mps"]))
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_absent_device_for_evaluate_predict_suggests_device_cpu(device, command, ckpt, synth, tmp_path, capsys):
    if command == "evaluate":
        args = ["--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "o"]
    else:
        args = [synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", ckpt, "--out", tmp_path / "o"]
    msg = refused(capsys, command, *args, "--device", device, "--no-progress")
    assert repr(device) in msg and "--device cpu" in msg and "run.device" not in msg
    assert not (tmp_path / "o").exists()


def _evaluate(capsys, ckpt, synth, out, *extra):
    return m2s(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", out, "--no-progress", *extra)


def test_evaluate_refuses_a_folder_holding_an_evaluation(ckpt, synth, tmp_path, capsys):
    """Failure 3: a second evaluation replaced results.csv and left the first one's predictions of other sets."""
    out = tmp_path / "eval"
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "CVC-300")[0] == 0
    before = digests(out)
    got, _, err = _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir")
    assert got == 1
    msg = error_line(err, "evaluate")
    assert str(out) in msg and "--overwrite" in msg and "--out" in msg
    assert digests(out) == before


def test_evaluate_overwrite_removes_only_its_own_old_outputs(ckpt, synth, tmp_path, capsys):
    out = tmp_path / "eval"
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "CVC-300")[0] == 0
    notes = out / "my_notes.txt"
    notes.write_text("keep me")
    mine = png(out / "figures" / "fig.png", rgb())
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "--overwrite")[0] == 0
    assert not (out / "CVC-300").exists() and not (out / "per_image" / "CVC-300.csv").exists()
    assert (out / "Kvasir" / "0001.png").is_file()
    assert notes.read_text() == "keep me" and mine.is_file()
    import pandas as pd

    assert pd.read_csv(out / "results.csv")["dataset"].tolist() == ["Kvasir"]


def _predict(capsys, ckpt, out, *inputs_and_flags):
    return m2s(capsys, "predict", *inputs_and_flags, "--checkpoint", ckpt, "--out", out, "--no-progress")


def test_predict_refuses_a_folder_holding_predictions_and_overwrite_clears_them(ckpt, synth, tmp_path, capsys):
    out = tmp_path / "pred"
    kvasir = synth / "TestDataset" / "Kvasir" / "images"
    cvc = synth / "TestDataset" / "CVC-300" / "images"
    assert _predict(capsys, ckpt, out, kvasir, cvc)[0] == 0
    assert (out / "masks" / "0001-2.png").is_file()
    before = digests(out)
    got, _, err = _predict(capsys, ckpt, out, kvasir)
    assert got == 1 and "--overwrite" in error_line(err, "predict")
    assert digests(out) == before
    (out / "readme.txt").write_text("mine")
    assert _predict(capsys, ckpt, out, kvasir, "--overwrite")[0] == 0
    assert not (out / "masks" / "0001-2.png").exists() and (out / "masks" / "0001.png").is_file()
    assert (out / "readme.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_overwrite_never_deletes_a_dataset_used_as_output_folder(command, ckpt, synth, tmp_path, capsys):
    """`--out` pointed at the data itself: its masks/ (predict) or its set folders (evaluate) are not outputs."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth / "TestDataset", data / "TestDataset")
    before = digests(data)
    if command == "predict":
        args = ["predict", data / "TestDataset" / "Kvasir", "--checkpoint", ckpt, "--out", data / "TestDataset" / "Kvasir"]
    else:
        args = ["evaluate", "--checkpoint", ckpt, "--data-root", data, "--out", data / "TestDataset"]
    for extra in ([], ["--overwrite"]):
        msg = refused(capsys, *args, "--no-progress", *extra)
        assert "no earlier" in msg and "choose another --out" in msg and ("masks" in msg or "Kvasir" in msg)
        assert digests(data) == before


def test_predict_with_an_unreadable_file_skips_and_lists_it(ckpt, synth, tmp_path, capsys):
    src = tmp_path / "photos"
    for k in range(3):
        png(src / f"p{k}.png", rgb(40, 48, k))
    (src / "p1.png").write_bytes(b"")
    before = digests(src)
    out = tmp_path / "pred"
    got, stdout, err = _predict(capsys, ckpt, out, src)
    assert got == 1
    msg = error_line(err, "predict")
    assert "p1.png" in msg and "skipped" in msg
    import pandas as pd

    df = pd.read_csv(out / "predictions.csv")
    assert df["name"].tolist() == ["p0", "p2"] and not (out / "masks" / "p1.png").exists()
    assert digests(src) == before


@pytest.mark.parametrize("case", ["missing input", "folder without images", "missing set", "no test sets"])
def test_evaluate_predict_input_errors(case, ckpt, synth, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    if case == "missing input":
        msg = refused(capsys, "predict", tmp_path / "nope.png", "--checkpoint", ckpt, "--out", tmp_path / "o")
        assert "nope.png" in msg and "does not exist" in msg
    elif case == "folder without images":
        msg = refused(capsys, "predict", tmp_path / "empty", "--checkpoint", ckpt, "--out", tmp_path / "o")
        assert "empty" in msg and "holds no images" in msg
    elif case == "missing set":
        msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "o",
                      "--sets", "Kvasr")  # fmt: skip
        assert "Kvasr" in msg and "Kvasir" in msg
    else:
        msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", tmp_path / "empty", "--out",
                      tmp_path / "o")  # fmt: skip
        assert "no test sets" in msg and "m2s data" in msg
    assert not (tmp_path / "o").exists()


def test_evaluate_with_an_unreadable_mask_names_it(ckpt, synth, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth / "TestDataset" / "Kvasir", root / "TestDataset" / "Kvasir")
    (root / "TestDataset" / "Kvasir" / "masks" / "0002.png").write_bytes(b"")
    msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", root, "--out", tmp_path / "o",
                  "--no-progress")  # fmt: skip
    assert "0002.png" in msg and "Replace or delete" in msg


# ---------------------------------------------------------------------------------------------------------------
# Archives (m2s data download --source)
# ---------------------------------------------------------------------------------------------------------------
def _test_set_tree(src: Path) -> Path:
    for k in range(2):
        png(src / "TestDataset" / "Kvasir" / "images" / f"{k}.png", rgb(16, 16, k))
        png(src / "TestDataset" / "Kvasir" / "masks" / f"{k}.png", disk(16, 16, 4).astype(np.uint8) * 255)
    return src


def _zip(src: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return out


def _tar(src: Path, out: Path, extra: dict[str, bytes] | None = None, mode: str = "w:gz") -> Path:
    with tarfile.open(out, mode) as tf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                tf.add(p, p.relative_to(src).as_posix())
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out


def _archive(kind: str, tmp_path: Path) -> Path:
    src = _test_set_tree(tmp_path / "src")
    if kind == "truncated zip":  # failure 5
        full = _zip(src, tmp_path / "full.zip").read_bytes()
        (tmp_path / "test.zip").write_bytes(full[: len(full) // 2])
        return tmp_path / "test.zip"
    if kind == "truncated tar.gz":
        full = _tar(src, tmp_path / "full.tgz").read_bytes()
        (tmp_path / "test.tar.gz").write_bytes(full[: len(full) // 2])
        return tmp_path / "test.tar.gz"
    if kind == "tar with ../ member":  # failure 6
        return _tar(src, tmp_path / "test.tar.gz", {"../escaped.txt": b"outside"})
    if kind == "tar with absolute member":
        return _tar(src, tmp_path / "test.tar.gz", {str(tmp_path / "absolute.txt"): b"outside"})
    if kind == "plain tar with ../ member":
        return _tar(src, tmp_path / "test.tar", {"TestDataset/../../escaped.txt": b"outside"}, mode="w")
    if kind == "zip with ../ member":
        return _zip(src, tmp_path / "test.zip", {"../escaped.txt": b"outside"})
    if kind == "zip with absolute member":
        return _zip(src, tmp_path / "test.zip", {"/tmp/absolute.txt": b"outside"})
    if kind == "text file":
        (tmp_path / "test.zip").write_text("not an archive")
        return tmp_path / "test.zip"
    if kind == "html page":
        (tmp_path / "test.zip").write_text("<!DOCTYPE html><html>quota exceeded</html>")
        return tmp_path / "test.zip"
    raise AssertionError(kind)


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


# ---------------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", absent_devices(["cuda", "mps"]))
def test_reproduce_checks_the_device_before_any_work(device, tmp_path, monkeypatch, capsys):
    """Failure 4: `--device cuda` without CUDA generated data, made a run folder and died in a notebook."""
    from m2s_lib.teaching import reproduce

    calls = []
    g = reproduce.main.__globals__  # the module that really runs main (wherever it lives)
    monkeypatch.setitem(g, "resolve_data", lambda *a, **k: calls.append("data") or (_ for _ in ()).throw(
        AssertionError("data generated before the device was checked")))
    monkeypatch.setitem(g, "run_notebook", lambda *a, **k: calls.append("notebook"))
    out = tmp_path / "runs"
    code = reproduce.main(["--device", device, "--out", str(out), "--data-dir", str(tmp_path / "data"),
                           "--notebooks", "00", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and calls == [], err
    assert "Traceback" not in err and repr(device) in err and "--device cpu" in err
    assert not out.exists() and not (tmp_path / "data").exists()


def test_reproduce_unknown_profile_before_any_work(tmp_path, capsys):
    from m2s_lib.teaching import reproduce

    code = reproduce.main(["--profile", "tinny", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "tinny" in err and "tiny" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------------------------
# Real processes: what a user sees on the terminal
# ---------------------------------------------------------------------------------------------------------------
def test_real_processes_print_one_line_and_no_traceback(synth, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    archive = _archive("tar with ../ member", tmp_path)
    commands = [
        (["predict", str(synth / "TestDataset" / "Kvasir" / "images"), "--checkpoint", str(junk), "--out",
          str(tmp_path / "o")], "junk.pt"),
        (["data", "download", "polyp-test", "--root", str(tmp_path / "d"), "--source", str(archive), "--quiet"],
         "escaped.txt"),
    ]  # fmt: skip
    for args, word in commands:
        res = subprocess.run([sys.executable, "-m", "m2s_lib.cli", *args], capture_output=True, text=True,
                             timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stdout + res.stderr, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln]
        assert len(lines) == 1 and lines[0].startswith(f"m2s {args[0]}: error:") and word in lines[0], res.stderr
