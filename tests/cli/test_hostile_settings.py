"""Hostile settings (issue 22, round 3): a key given twice in a YAML file, `--config` without `--profile`, and
numeric settings that are not finite or out of range: one line naming the key, before anything is written."""
# ruff: noqa: F811 (the module-scoped fixture synth comes from hostile_support)
from __future__ import annotations

import pytest
import yaml
from hostile_support import TRAIN_SMALL, m2s, refused, synth  # noqa: F401


@pytest.mark.parametrize("text, key", [
    ("optim:\n  lr: 0.01\nmodel:\n  channels: 16\noptim:\n  epochs: 3\n", "'optim'"),
    ("optim:\n  lr: 0.01\n  momentum: 0.8\n  lr: 0.02\n", "'lr'"),
])  # fmt: skip
def test_a_key_given_twice_in_a_config_file_is_refused(text, key, synth, tmp_path, capsys):
    """A second `optim:` section silently dropped the first: lr 0.01 became the 0.05 default."""
    f = tmp_path / "my.yaml"
    f.write_text(text)
    msg = refused(capsys, "train", "--config", f, "--data-root", synth, "--out", tmp_path / "r", *TRAIN_SMALL)
    assert str(f) in msg and key in msg and "twice" in msg, msg
    assert not (tmp_path / "r").exists()


def test_config_without_profile_uses_the_default_that_help_names(tmp_path, capsys):
    """`--config` without `--profile` gave paper-polyp (res2net50d from ImageNet, 352 px); --help says tiny."""
    from m2s_lib.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "default: tiny" in sub.format_help()
    f = tmp_path / "my.yaml"
    f.write_text("optim:\n  lr: 0.01\n")
    code, out, err = m2s(capsys, "train", "--config", f, "--print-config")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["profile"] == "tiny" and cfg["model"]["encoder_name"] == "resnet18d", out
    assert cfg["optim"]["lr"] == 0.01
    f.write_text("profile: paper-polyp\noptim:\n  lr: 0.01\n")  # the file's own profile: entry still wins
    assert yaml.safe_load(m2s(capsys, "train", "--config", f, "--print-config")[1])["profile"] == "paper-polyp"


@pytest.mark.parametrize("setting, key", [
    ("optim.lr=nan", "optim.lr"),
    ("optim.lr=inf", "optim.lr"),
    ("optim.weight_decay=nan", "optim.weight_decay"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.encoder_lr_ratio=inf", "optim.encoder_lr_ratio"),
    ("optim.encoder_lr_ratio=.nan", "optim.encoder_lr_ratio"),
    ("optim.momentum=1.5", "optim.momentum"),
    ("model.channels=0", "model.channels"),
    ("run.seed=-1", "run.seed"),
    ("optim.grad_clip=-1", "optim.grad_clip"),
    ("data.rotation=nan", "data.rotation"),
])  # fmt: skip
def test_numeric_settings_are_finite_and_in_range_and_named(setting, key, synth, tmp_path, capsys):
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", tmp_path / "r", *TRAIN_SMALL,
                  setting)  # fmt: skip
    assert msg.startswith(key), msg
    assert not (tmp_path / "r").exists()


def test_seed_option_out_of_range_names_the_option(synth, tmp_path, capsys):
    msg = refused(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", tmp_path / "r", "--seed", "-1",
                  *TRAIN_SMALL)  # fmt: skip
    assert "run.seed" in msg, msg


def test_ablation_seeds_must_be_non_negative(tmp_path, capsys):
    code, _, err = m2s(capsys, "ablations", "run", "--preset", "smoke", "--seeds", "-1", "--out", tmp_path / "s")
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "--seeds" in ln]
    assert lines and "-1" in lines[-1], err
    assert not (tmp_path / "s").exists()
