"""Hostile inputs for `m2s train`: too few images, bad settings, absent devices, an existing run, Ctrl-C."""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import pytest
from hostile_support import (  # noqa: F401
    TRAIN_SMALL,
    absent_devices,
    ckpt,
    digests,
    m2s,
    pair_folder,
    refused,
    synth,
)


# ---------------------------------------------------------------------------------------------------------------
# Training settings and runs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_images", [1, 2])
def test_too_few_images_for_one_step_is_refused(n_images, tmp_path, capsys):
    """Failure 2: 'epochs of 0 steps', loss 0, exit 0 and an untrained best.pt."""
    root = pair_folder(tmp_path / "d", n=n_images)
    args = [a for a in TRAIN_SMALL if not a.startswith("data.val_fraction")] + [
        f"data.val_fraction={0 if n_images == 1 else 0.5}",
        "optim.batch_size=8",
    ]
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", root, "--out", tmp_path / "run", "--epochs",
                  "2", *args)  # fmt: skip
    assert "batch" in msg and "1 training image" in msg
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    "setting,words",
    [
        ("optim.lrr=0.1", "Did you mean 'optim.lr'?"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("data.size=30", "data.size"),
        ("model.name=unet", "model.name"),
    ],
)
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
