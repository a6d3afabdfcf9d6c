"""Hostile checkpoints and numeric options for `m2s evaluate` / `m2s predict` / `m2s train --resume`."""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hostile_support import (  # noqa: F401
    TRAIN_SMALL,
    _test_set_tree,
    _zip,
    ckpt,
    digests,
    error_line,
    m2s,
    refused,
    synth,
)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["junk text", "zero-byte", "truncated", "random bytes"])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_unreadable_checkpoint_is_one_line_without_unexplained_numbers(kind, command, ckpt, synth, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    data = {
        "junk text": b"junk text, not a checkpoint\n",
        "zero-byte": b"",
        "truncated": ckpt.read_bytes()[: ckpt.stat().st_size // 2],
        "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }[kind]
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
        "predict": [
            "predict",
            synth / "TestDataset" / "Kvasir" / "images",
            "--checkpoint",
            ckpt,
            "--out",
            afile,
            "--no-progress",
        ],
        "download": [
            "data",
            "download",
            "polyp-test",
            "--root",
            afile,
            "--source",
            _zip(_test_set_tree(tmp_path / "src"), tmp_path / "t.zip"),
            "--quiet",
        ],
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


@pytest.mark.parametrize(
    "command, option, value, words",
    [
        ("evaluate", "--batch-size", "0", "at least 1 (got 0)"),
        ("evaluate", "--size", "0", "multiple of 8 and at least 32"),
        ("evaluate", "--size", "100", "multiple of 8 and at least 32"),
        ("predict", "--size", "-8", "multiple of 8 and at least 32"),
        ("profile", "--repeats", "0", "at least 1 (got 0)"),
        ("profile", "--size", "3x", "not a whole number"),
    ],
)
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
