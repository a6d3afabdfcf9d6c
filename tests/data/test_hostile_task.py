"""Hostile task mismatches on the data side: the masks' label values are checked against the run's task (binary
masks for a label task, label images for a binary task) before training or evaluating."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.constants import GOALS_CLASS_VALUES
from m2s_lib.data.folders import SegmentationFolder
from m2s_lib.data.layout import DatasetError

SMALL = ["data.size=32", "data.train_sizes=[32]", "optim.batch_size=2", "model.channels=16", "run.progress=false",
         "run.max_steps_per_epoch=1", "data.val_fraction=0", "model.encoder_name=resnet18d",
         "model.encoder_weights=null", "loss.lossnet_weights=null"]  # fmt: skip


@pytest.fixture(scope="module")
def polyp(tmp_path_factory) -> Path:
    from m2s_lib.data.synthetic import generate

    return generate("polyp", tmp_path_factory.mktemp("task") / "polyp", n=4, seed=1, size=48, n_test=1,
                    progress=False, workers=1)  # fmt: skip


@pytest.fixture(scope="module")
def oct_data(tmp_path_factory) -> Path:
    from m2s_lib.data.synthetic import generate

    return generate("oct", tmp_path_factory.mktemp("task") / "oct", n=3, seed=1, size=64, n_test=1,
                    progress=False, workers=1)  # fmt: skip


def _train(capsys, root: Path, out: Path, *extra: str) -> tuple[int, str]:
    from m2s_lib.cli import main

    code = main(["train", "--profile", "paper-oct", "--data-root", str(root), "--out", str(out), "--epochs", "1",
                 *SMALL, *extra])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("m2s train: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_oct_training_on_synthetic_polyp_data_is_refused(polyp, tmp_path, capsys):
    code, err = _train(capsys, polyp, tmp_path / "run")
    assert code == 1, err  # was: trained, reading 0 as RNFL
    line = _one_line(err)
    assert "polyp" in line and "m2s_synthetic.json" in line and "4 classes" in line, line
    assert not (tmp_path / "run" / "last.pt").exists()


def test_oct_training_on_binary_masks_without_a_manifest_is_refused(polyp, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(polyp / "TrainDataset", root / "TrainDataset")
    code, err = _train(capsys, root, tmp_path / "run")
    assert code == 1, err
    line = _one_line(err)
    assert "0 and 255" in line and "binary" in line, line


def test_label_task_accepts_real_label_images(oct_data):
    ds = SegmentationFolder(oct_data / "TrainDataset", size=32, classes=4, class_values=GOALS_CLASS_VALUES)
    ds.check_foreground()
    ds.check_labels()


def test_binary_task_on_oct_label_images_is_refused(oct_data, tmp_path):
    with pytest.raises(DatasetError, match="oct"):
        SegmentationFolder(oct_data / "TrainDataset", size=32).check_foreground()
    root = tmp_path / "copy"  # no manifest: the label values themselves give it away
    shutil.copytree(oct_data / "TrainDataset", root)
    with pytest.raises(DatasetError, match="label"):
        SegmentationFolder(root, size=32).check_foreground()


def test_manifest_of_another_kind_is_named_for_evaluation_too(polyp):
    ds = SegmentationFolder(polyp / "TestDataset" / "Kvasir", size=32, classes=4, class_values=GOALS_CLASS_VALUES)
    with pytest.raises(DatasetError, match="polyp"):
        ds.check_labels()


def test_a_damaged_manifest_does_not_hide_the_label_check(polyp, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(polyp, root)
    (root / "m2s_synthetic.json").write_text(json.dumps({"task": 3}))
    ds = SegmentationFolder(root / "TrainDataset", size=32, classes=4, class_values=GOALS_CLASS_VALUES)
    with pytest.raises(DatasetError, match="binary"):
        ds.check_labels()


def test_two_valued_label_set_of_two_classes_is_fine(tmp_path):
    for k in range(2):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save((tmp_path / "images").mkdir(exist_ok=True) or
                                                              tmp_path / "images" / f"{k}.png")
        m = np.zeros((16, 16), np.uint8)
        m[4:8] = 255
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(m).save(tmp_path / "masks" / f"{k}.png")
    SegmentationFolder(tmp_path, size=16, classes=2, class_values=(0, 255)).check_labels()
