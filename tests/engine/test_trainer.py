"""m2s_lib.engine.trainer: schedule, checkpoints, exact resume, refusals, non-finite loss, DDP with two gloo processes."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn

from m2s_lib.backbones import CheckpointMismatchError
from m2s_lib.config import get_profile, load_config
from m2s_lib.engine.checkpoint import load_checkpoint, model_from_checkpoint
from m2s_lib.engine.history import METRICS_COLUMNS
from m2s_lib.engine.optim import build_optimizer, build_scheduler, lr_factor
from m2s_lib.engine.run_folder import RunExistsError
from m2s_lib.engine.step import NonFiniteLossError
from m2s_lib.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def polyp_root(tmp_path_factory):
    """12 training images of 64 px and 3 per test set (test sets keep their own aspect ratios)."""
    from m2s_lib.data.synthetic import generate

    return generate("polyp", tmp_path_factory.mktemp("data") / "polyp", n=12, seed=0, size=64, n_test=3,
                    progress=False, workers=1)  # fmt: skip


def tiny_config(root, *extra):
    return load_config(profile="tiny", overrides=[
        f"data.root={root}", "data.size=64", "data.train_sizes=[32,64]", "data.val_fraction=0.17",
        "optim.batch_size=4", "optim.epochs=2", "model.channels=16", "run.progress=false", "data.num_workers=0",
        *extra,
    ])  # fmt: skip


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)


# ---------------------------------------------------------------------------------------------------------------
def test_lr_factor_is_the_authors_triangle():
    E = 50
    factors = [lr_factor(e, E) for e in range(E)]
    assert factors[0] == pytest.approx(2 / 51) and max(factors) == pytest.approx(1 - abs(2 * 25 / 51 - 1))
    assert factors == [1 - abs(2 * (e + 1) / (E + 1) - 1) for e in range(E)]
    assert factors[:25] == sorted(factors[:25]) and factors[25:] == sorted(factors[25:], reverse=True)


def test_lr_factor_peak_moves_the_top_of_the_triangle():
    T, peak = 99, 0.2  # x = (i+1)/100
    factors = [lr_factor(i, T, peak) for i in range(T)]
    assert factors[19] == pytest.approx(1.0) and max(factors) == pytest.approx(1.0)  # x = 0.2
    assert factors[9] == pytest.approx(0.1 / 0.2) and factors[59] == pytest.approx(0.4 / 0.8)
    assert factors[:20] == sorted(factors[:20]) and factors[19:] == sorted(factors[19:], reverse=True)
    assert [lr_factor(i, 50, 0.5) for i in range(50)] == [lr_factor(i, 50) for i in range(50)]


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_scheduler_follows_the_formula_and_keeps_encoder_at_a_tenth(unit):
    cfg = get_profile("paper-polyp").override({"optim.epochs": 5, "optim.schedule_unit": unit})
    model = _Net()
    opt = build_optimizer(model, cfg)
    assert [g["name"] for g in opt.param_groups] == ["encoder", "head"]
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.encoder.parameters()}
    steps = 4
    sched = build_scheduler(opt, cfg, steps_per_epoch=steps)
    total = 5 if unit == "epoch" else 5 * steps
    for epoch in range(5):
        for step in range(steps):
            k = epoch if unit == "epoch" else epoch * steps + step
            enc, head = opt.param_groups[0]["lr"], opt.param_groups[1]["lr"]
            assert head == pytest.approx(0.05 * lr_factor(k, total))
            assert enc == pytest.approx(0.1 * head)
            opt.step()
            if unit == "step":
                sched.step()
        if unit == "epoch":
            sched.step()
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4


def test_adamw_keeps_the_two_groups():
    cfg = get_profile("tiny").override({"optim.optimizer": "adamw", "optim.lr": 1e-3, "optim.encoder_lr_ratio": 0.1})
    opt = build_optimizer(_Net(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(1e-4), 1e-3]


def test_trainer_lr_per_step_within_an_epoch(polyp_root, tmp_path):
    """The lr seen by every optimiser step of a real run, for both groups."""
    seen = []

    class Rec:
        def on_step_end(self, trainer, info):
            seen.append((info["global_step"], *trainer.lrs))

    cfg = tiny_config(polyp_root, "optim.schedule_unit=step", "optim.encoder_lr_ratio=0.1", "optim.epochs=1")
    assert cfg.optim.warmup_fraction == 0.2  # the tiny profile's short warm-up, not the authors' 0.5
    trainer = Trainer(cfg, None, callbacks=[Rec()])
    trainer.fit()
    total = trainer.steps_per_epoch
    assert len(seen) == total == 3  # 10 training images, batch 4
    for k, enc, head in seen:  # recorded after step k, i.e. the lr of the next step
        assert head == pytest.approx(cfg.optim.lr * lr_factor(k, total, cfg.optim.warmup_fraction), abs=1e-12)
        assert enc == pytest.approx(0.1 * head)


def test_run_writes_files_and_resume_is_bitwise_identical(polyp_root, tmp_path):
    cfg = tiny_config(polyp_root, "run.max_steps_per_epoch=2")
    full = Trainer(cfg, tmp_path / "full")
    history = full.fit()
    assert list(history.columns) == list(METRICS_COLUMNS) and len(history) == 2

    paused = Trainer(cfg, tmp_path / "split")
    paused.fit(stop_after_epoch=1)
    assert paused.epoch == 1 and len(pd.read_csv(tmp_path / "split" / "metrics.csv")) == 1
    resumed = Trainer(cfg, tmp_path / "split", resume=True)
    assert resumed.epoch == 1 and resumed.global_step == paused.global_step
    resumed.fit()

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    for name in ("last.pt", "best.pt", "metrics.csv", "config.yaml"):
        assert (tmp_path / "split" / name).is_file()
    csv_full = pd.read_csv(tmp_path / "full" / "metrics.csv")
    csv_split = pd.read_csv(tmp_path / "split" / "metrics.csv")
    assert list(csv_full.columns) == list(METRICS_COLUMNS)
    same = [c for c in METRICS_COLUMNS if c not in ("time_s", "images_per_s")]
    pd.testing.assert_frame_equal(csv_full[same], csv_split[same])

    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    for key in ("config", "epoch", "step", "model", "optimizer", "scheduler", "scaler", "rng", "data_order"):
        assert key in ckpt
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"} and ckpt["epoch"] == 2
    assert not [p for p in (tmp_path / "split").iterdir() if ".tmp" in p.name]


def test_nothing_is_overwritten_without_overwrite(polyp_root, tmp_path):
    cfg = tiny_config(polyp_root, "optim.epochs=1", "run.max_steps_per_epoch=1")
    Trainer(cfg, tmp_path).fit()
    before = (tmp_path / "last.pt").stat().st_mtime_ns
    with pytest.raises(RunExistsError, match=f"{tmp_path}.*--resume.*--overwrite"):
        Trainer(cfg, tmp_path)
    assert (tmp_path / "last.pt").stat().st_mtime_ns == before
    trainer = Trainer(cfg, tmp_path, overwrite=True)
    assert not (tmp_path / "last.pt").exists() and trainer.epoch == 0
    with pytest.raises(FileNotFoundError, match="no last.pt"):
        Trainer(cfg, tmp_path / "empty", resume=True)


def test_non_finite_loss_stops_with_step_files_and_checkpoint(polyp_root, tmp_path):
    cfg = tiny_config(polyp_root, "run.max_steps_per_epoch=2")
    trainer = Trainer(cfg, tmp_path)
    real = trainer.criterion
    calls = {"n": 0}

    def poisoned(logits, target):
        parts = real(logits, target)
        calls["n"] += 1
        if calls["n"] == trainer.steps_per_epoch + 2:  # second step of the second epoch
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    trainer.criterion = poisoned
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "epoch 2, step 2" in msg and str(tmp_path / "last.pt") in msg and "(epoch 1)" in msg
    names = set(trainer.train_set.dataset.names)
    assert any(f"'{n}'" in msg for n in names), msg
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # the last good checkpoint is intact


def test_missing_data_root_is_explained(tmp_path):
    cfg = tiny_config(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        Trainer(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_other_architecture_is_named(polyp_root, tmp_path):
    cfg = tiny_config(polyp_root, "optim.epochs=1", "run.max_steps_per_epoch=1")
    Trainer(cfg, tmp_path).fit()
    with pytest.raises(CheckpointMismatchError, match="model.name: run 'm2snet', asked 'msnet'"):
        Trainer(cfg.override(["model.name=msnet"]), tmp_path, resume=True)
    with pytest.raises(CheckpointMismatchError, match="model.name: checkpoint 'm2snet', expected 'fpn'"):
        model_from_checkpoint(tmp_path / "last.pt", expect=cfg.override(["model.name=fpn"]))
    model, loaded = model_from_checkpoint(tmp_path / "last.pt")
    assert loaded.model == cfg.model and not model.training
    # a foreign state dict: the mismatch is listed key by key
    from m2s_lib.engine.checkpoint import load_model_state as _load_model_state
    from m2s_lib.model import build_model

    msnet = build_model("msnet", encoder_name="resnet18d", channels=16)
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint"):
        _load_model_state(msnet, {k: v for k, v in model.state_dict().items() if "mmsm" not in k}, "that file")


def test_callbacks_can_stop_and_see_rows(polyp_root, tmp_path):
    rows = []

    def on_epoch_end(trainer, row):
        rows.append(row)
        trainer.stop_training = True

    cfg = tiny_config(polyp_root, "optim.epochs=3", "run.max_steps_per_epoch=1")
    history = Trainer(cfg, None, callbacks=[on_epoch_end]).fit()
    assert len(history) == 1 and rows[0]["epoch"] == 1 and set(METRICS_COLUMNS) <= set(rows[0])
    assert 0 <= rows[0]["val_dice"] <= 1


def test_multiclass_oct_run(tmp_path):
    from m2s_lib.data.synthetic import generate

    root = generate("oct", tmp_path / "oct", n=6, seed=0, size=64, n_test=2, progress=False, workers=1)
    cfg = load_config(profile="paper-oct", overrides=[
        f"data.root={root}", "model.encoder_name=resnet18d", "model.encoder_weights=null", "model.channels=16",
        "loss.lossnet_weight=0", "data.size=64", "data.train_sizes=[64]", "data.val_fraction=0.34",
        "optim.batch_size=2", "optim.epochs=1", "run.progress=false",
    ])  # fmt: skip
    history = Trainer(cfg, tmp_path / "run").fit()
    assert math.isfinite(history["train_loss"][0]) and 0 <= history["val_dice"][0] <= 1


@pytest.mark.slow
def test_ddp_two_gloo_processes_write_one_checkpoint(polyp_root, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "m2s_lib.cli", "train", "--profile", "tiny", "--data-root", str(polyp_root), "--out", str(out),
        "--epochs", "1", "--device", "cpu", "data.size=64", "data.train_sizes=[64]", "optim.batch_size=4",
        "model.channels=16", "run.progress=false", "data.val_fraction=0.17",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.csv"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 1
    assert ckpt["step"] == 2  # 10 images: 5 per process, batches of 2, the single-image remainder dropped
    assert len(pd.read_csv(out / "metrics.csv")) == 1
    assert proc.stdout.count("epoch 1/1 |") == 1  # rank 0 alone prints
