"""m2s_lib.engine.evaluate and m2s_lib.engine.predict: predictions at original size, scores equal to re-scoring the written PNGs, tables, loading."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from m2s_lib.backbones import CheckpointMismatchError
from m2s_lib.config import load_config
from m2s_lib.data import find_test_sets, load_mask
from m2s_lib.engine import evaluate as E
from m2s_lib.engine.checkpoint import load_model
from m2s_lib.engine.predict import overlay, predict_files
from m2s_lib.engine.trainer import Trainer
from m2s_lib.metrics import PolypMetrics


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A polyp dataset (test sets of different aspect ratios) and a checkpoint trained for one step."""
    from m2s_lib.data.synthetic import generate

    base = tmp_path_factory.mktemp("eval")
    root = generate("polyp", base / "polyp", n=8, seed=1, size=64, n_test=2, progress=False, workers=1)
    cfg = load_config(profile="tiny", overrides=[
        f"data.root={root}", "data.size=64", "data.train_sizes=[64]", "optim.batch_size=4", "optim.epochs=1",
        "model.channels=16", "run.progress=false", "run.max_steps_per_epoch=1", "data.val_fraction=0.25",
    ])  # fmt: skip
    Trainer(cfg, base / "run").fit()
    return root, base / "run" / "best.pt", base


def test_evaluate_checkpoint_writes_maps_at_original_size_and_tables(run, tmp_path):
    root, ckpt, _ = run
    out = tmp_path / "eval"
    results = E.evaluate_checkpoint(ckpt, root, out, progress=False)
    assert list(results.columns) == ["dataset", "n", "mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE", "protocol"]
    sets = find_test_sets(root)
    assert list(results["dataset"]) == list(sets) and (results["n"] == 2).all()
    assert set(results["protocol"]) == {"pranet"}
    on_disk = pd.read_csv(out / "results.csv")
    assert list(on_disk.columns) == list(results.columns) and len(on_disk) == 5
    md = (out / "results.md").read_text()
    assert "Table 1 layout" in md and "Protocol: pranet" in md
    for name, folder in sets.items():
        per_image = pd.read_csv(out / "per_image" / f"{name}.csv", dtype={"name": str})
        metric = PolypMetrics("pranet")
        for mask_path in sorted((folder / "masks").iterdir()):
            pred_path = out / name / f"{mask_path.stem}.png"
            pred = np.asarray(Image.open(pred_path))
            gt = load_mask(mask_path)
            assert pred.dtype == np.uint8 and pred.shape == gt.shape  # the original size, not 64 x 64
            metric.update(pred, gt.astype(bool), name=mask_path.stem)
        rescored = metric.results()  # the written PNGs give the same numbers
        row = results.set_index("dataset").loc[name]
        for key in ("mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE"):
            assert row[key] == pytest.approx(rescored[key], abs=1e-12), (name, key)
        assert list(per_image["name"]) == metric.names
    heights = {np.asarray(Image.open(next((out / s).glob("*.png")))).shape[0] for s in sets}
    assert len(heights) > 1  # the five sets keep their own aspect ratios


def test_authors_protocol_and_set_selection(run, tmp_path):
    root, ckpt, _ = run
    res = E.evaluate_checkpoint(ckpt, root, tmp_path, protocol="authors", sets=["Kvasir"], progress=False)
    assert list(res["dataset"]) == ["Kvasir"] and set(res["protocol"]) == {"authors"}
    with pytest.raises(ValueError, match="not under"):
        E.evaluate_checkpoint(ckpt, root, tmp_path, sets=["Nope"], progress=False)
    with pytest.raises(FileNotFoundError):
        E.evaluate_checkpoint(ckpt, tmp_path / "missing", tmp_path, progress=False)


def test_load_model_names_architecture_mismatches(run, tmp_path):
    _, ckpt, _ = run
    model, cfg = load_model(ckpt, device="cpu")
    assert cfg.model.encoder_name == "resnet18d" and not model.training
    with pytest.raises(CheckpointMismatchError, match="model.name: checkpoint 'm2snet', expected 'msnet'"):
        load_model(ckpt, device="cpu", model="msnet")
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointMismatchError, match="neither an m2s training checkpoint nor the authors'"):
        load_model(foreign, device="cpu", encoder_name="resnet18d")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pt")


def test_predict_files_writes_masks_and_overlays_at_original_size(run, tmp_path):
    root, ckpt, _ = run
    model, cfg = load_model(ckpt, device="cpu")
    folder = find_test_sets(root)["CVC-300"]
    single = sorted((find_test_sets(root)["Kvasir"] / "images").iterdir())[0]
    df = predict_files(model, [folder, single], tmp_path, size=64, progress=False)
    assert len(df) == 3 and (tmp_path / "predictions.csv").is_file()
    for _, row in df.iterrows():
        mask = np.asarray(Image.open(row["mask"]))
        over = np.asarray(Image.open(row["overlay"]))
        assert mask.shape == (row["height"], row["width"]) and set(np.unique(mask)) <= {0, 255}
        assert over.shape == (row["height"], row["width"], 3)
    assert df["name"].tolist() == ["0001", "0002", "0001-2"]  # same file names from two folders
    with pytest.raises(FileNotFoundError):
        predict_files(model, [tmp_path / "missing.png"], tmp_path, progress=False)


def test_overlay_tints_only_the_mask():
    img = np.full((10, 10, 3), 100, np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[3:7, 3:7] = True
    out = overlay(img, mask)
    assert (out[~mask] == 100).all() and (out[mask] != 100).any()


def test_multiclass_evaluation_writes_label_values(tmp_path):
    from m2s_lib.data.synthetic import generate
    from m2s_lib.model import build_model

    root = generate("oct", tmp_path / "oct", n=2, seed=0, size=64, n_test=2, progress=False, workers=1)
    model = build_model("m2snet", encoder_name="resnet18d", channels=16, classes=4).eval()
    values = (255, 0, 80, 160)
    res = E.evaluate_sets(model, root, task="oct", size=64, class_values=values, out=tmp_path / "out", progress=False)
    assert set(res["protocol"]) == {"oct"} and {"Dice_RNFL", "MED_choroid", "mDice", "MED"} <= set(res.columns)
    png = np.asarray(Image.open(next((tmp_path / "out" / "GOALS").glob("*.png"))))
    assert set(np.unique(png)) <= set(values)
