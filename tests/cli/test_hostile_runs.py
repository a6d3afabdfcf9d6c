"""Hostile use of a run folder (issue 22, round 3): two writers on one folder, resuming with fewer epochs, recovery
hints that lead to a command that works (first-epoch Ctrl-C, NaN stop, full disk), stale temporary files, a resume
from another working directory, and `--checkpoint RUN_DIR`."""
# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import errno
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hostile_support import TRAIN_SMALL, ckpt, digests, m2s, refused, synth  # noqa: F401

HOLDER = """
import pathlib, sys, time
ready, go, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
import importlib
module_name, attr = target.rsplit(':', 1)
module = importlib.import_module(module_name)
owner, name = (getattr(module, attr.split('.')[0]), attr.split('.')[1]) if '.' in attr else (module, attr)
original = getattr(owner, name)
def slow(*args, **kwargs):
    ready.write_text('x')
    t = time.time()
    while not go.exists() and time.time() - t < 120:
        time.sleep(0.05)
    return original(*args, **kwargs)
setattr(owner, name, slow)
from m2s_lib.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _start_holder(tmp_path: Path, target: str, args: list) -> tuple[subprocess.Popen, Path]:
    """A real `m2s` process that pauses inside ``target`` (holding its output folder) until ``go`` exists."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ready), str(go), target, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    t = time.time()
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < 120, "the first writer never started"
        time.sleep(0.05)
    return proc, go


def _finish(proc: subprocess.Popen, go: Path) -> tuple[int, str]:
    go.write_text("go")
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


# ---------------------------------------------------------------------------------------------------------------
# The run-folder lock
# ---------------------------------------------------------------------------------------------------------------
def test_two_trainings_on_one_folder_exactly_one_proceeds(synth, tmp_path, capsys):
    """Both exited 0 in 2 of 4 tries: config.yaml said seed 1, the checkpoints were seed 2's, metrics.csv had 4 rows."""
    out = tmp_path / "run"
    args = ["train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "2", *TRAIN_SMALL]
    first, go = _start_holder(tmp_path, "m2s_lib.engine.trainer:Trainer.train_one_epoch", [*args, "--seed", "1"])
    try:
        for extra in ([], ["--overwrite"]):  # even --overwrite does not touch a folder being written
            msg = refused(capsys, *args, "--seed", "2", *extra)
            assert "is being written by `m2s train`" in msg and f"PID {first.pid}" in msg and "started 20" in msg, msg
    finally:
        code, text = _finish(first, go)
    assert code == 0, text
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["seed"] == 1
    import torch

    assert torch.load(out / "last.pt", weights_only=True)["config"]["run"]["seed"] == 1
    assert len(pd.read_csv(out / "metrics.csv")) == 2
    assert not (out / ".m2s.lock").exists()


def test_two_evaluations_on_one_folder_exactly_one_proceeds(ckpt, synth, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", out, "--no-progress", "--overwrite"]
    first, go = _start_holder(tmp_path, "m2s_lib.engine.evaluate:evaluate_sets", args)
    try:
        msg = refused(capsys, *args)
        assert "is being written by `m2s evaluate`" in msg and f"PID {first.pid}" in msg, msg
    finally:
        code, text = _finish(first, go)
    assert code == 0, text
    assert len(pd.read_csv(out / "results.csv")) == 5 and not (out / ".m2s.lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(synth, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".m2s.lock").write_text(json.dumps({"command": "m2s train", "pid": dead.pid,
                                               "started_utc": "2026-01-01 00:00:00 UTC"}))  # fmt: skip
    code, text, err = m2s(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "1",
                          *TRAIN_SMALL)  # fmt: skip
    assert code == 0, err
    assert f"PID {dead.pid}" in text + err and "no longer runs: taken over" in text + err
    assert (out / "last.pt").is_file() and not (out / ".m2s.lock").exists()


def test_lock_api_refuses_a_second_process_and_is_released(tmp_path):
    from m2s_lib.engine.folder_lock import lock_folder

    out = tmp_path / "site"
    probe = ("import sys; from m2s_lib.engine.folder_lock import lock_folder, FolderBusyError\n"
             "try:\n    lock_folder(sys.argv[1], 'm2s site').release()\nexcept FolderBusyError as e:\n    print(e); sys.exit(3)")
    with lock_folder(out, "m2s site"):
        res = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 3 and f"PID {os.getpid()}" in res.stdout, res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not out.exists()  # made by the lock, left empty: removed


# ---------------------------------------------------------------------------------------------------------------
# Resuming
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_epochs(synth, tmp_path_factory) -> Path:
    from m2s_lib.cli import main

    out = tmp_path_factory.mktemp("two") / "run"
    assert main(["train", "--profile", "tiny", "--data-root", str(synth), "--out", str(out), "--epochs", "2",
                 *TRAIN_SMALL]) == 0  # fmt: skip
    return out


def test_resume_with_fewer_epochs_than_done_is_refused(two_epochs, capsys):
    """Printed '2/1 epochs', exited 0 and rewrote config.yaml to epochs: 1."""
    before = digests(two_epochs)
    msg = refused(capsys, "train", "--out", two_epochs, "--resume", "--epochs", "1")
    assert "2 epochs" in msg and "--epochs 1" in msg, msg
    assert digests(two_epochs) == before


def _hinted_command(err: str) -> list[str]:
    found = re.findall(r"`(m2s train [^`]*)`", err)
    assert found, err
    return shlex.split(found[-1])[1:]


def test_first_epoch_ctrl_c_hint_leads_to_a_command_that_works(synth, tmp_path, capsys, monkeypatch):
    """The hint said 'run the same command again', which was refused ('already holds a run'), and --resume then
    said 'no last.pt'."""
    from m2s_lib.engine.trainer import Trainer

    original = Trainer.train_one_epoch
    monkeypatch.setattr(Trainer, "train_one_epoch", lambda self, epoch: (_ for _ in ()).throw(KeyboardInterrupt))
    out = tmp_path / "run"
    args = ["train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "2", *TRAIN_SMALL]
    code, _, err = m2s(capsys, *args)
    assert code == 130 and not (out / "last.pt").exists()
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    code, text, err2 = m2s(capsys, *_hinted_command(err))
    assert code == 0, err2
    assert "done: 2/2 epochs" in text


def test_nan_stop_in_the_first_epoch_hint_leads_to_a_command_that_works(synth, tmp_path, capsys, monkeypatch):
    import torch

    from m2s_lib.engine.trainer import Trainer

    original = Trainer._step

    def poisoned(self, batch, epoch, step):
        self._check_finite(torch.tensor(float("nan")), epoch, step, batch)

    monkeypatch.setattr(Trainer, "_step", poisoned)
    out = tmp_path / "run"
    code, _, err = m2s(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "1",
                       *TRAIN_SMALL)  # fmt: skip
    assert code == 1 and "non-finite loss" in err
    monkeypatch.setattr(Trainer, "_step", original)
    code, text, err2 = m2s(capsys, *_hinted_command(err))
    assert code == 0, err2
    assert "done: 1/1 epochs" in text


@pytest.mark.parametrize("failure", ["torch enforce fail", "ENOSPC"])
@pytest.mark.parametrize("epoch", [1, 2])
def test_full_disk_is_one_line_about_space_and_the_hint_works(failure, epoch, synth, tmp_path, capsys, monkeypatch):
    """Printed `[enforce fail at inline_container.cc:672] unexpected pos ...` with no mention of space."""
    from m2s_lib.engine import checkpoint

    real_save = checkpoint.torch.save
    calls = {"n": 0}

    def full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= epoch:
            if failure == "ENOSPC":
                raise OSError(errno.ENOSPC, "No space left on device", str(f))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9216 vs 9104")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint.torch, "save", full)
    out = tmp_path / "run"
    code, _, err = m2s(capsys, "train", "--profile", "tiny", "--data-root", synth, "--out", out, "--epochs", "2",
                       *TRAIN_SMALL)  # fmt: skip
    assert code == 1
    msg = [ln for ln in err.splitlines() if ln.startswith("m2s train: error:")]
    assert len(msg) == 1 and "space" in msg[0] and "enforce fail" not in msg[0], err
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    code, text, err2 = m2s(capsys, *_hinted_command(err))
    assert code == 0, err2
    assert "done: 2/2 epochs" in text


def test_stale_temporary_files_are_removed_on_resume_and_on_start(synth, tmp_path, capsys):
    """SIGKILL while writing last.pt left a hidden .last.pt.*.tmp (91 MB) that stayed after a successful resume."""
    out = tmp_path / "run"
    base = ["train", "--profile", "tiny", "--data-root", synth, "--out", out, *TRAIN_SMALL]
    assert m2s(capsys, *base, "--epochs", "1")[0] == 0
    (out / ".last.pt.k1ll3d_x.tmp").write_bytes(b"half a checkpoint")
    code, text, err = m2s(capsys, "train", "--out", out, "--resume", "--epochs", "2")
    assert code == 0, err
    assert not list(out.glob(".*.tmp")) and "temporary" in text + err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".best.pt.q9w8e7r6.tmp").write_bytes(b"half")
    assert m2s(capsys, *[a if a != out else fresh for a in base], "--epochs", "1")[0] == 0
    assert not list(fresh.glob(".*.tmp"))


def test_resume_works_from_another_working_directory(synth, tmp_path, capsys, monkeypatch):
    """The saved data.root was relative: 'data root 'data' does not exist' from another folder."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(synth, work / "data")
    monkeypatch.chdir(work)
    assert m2s(capsys, "train", "--profile", "tiny", "--data-root", "data", "--out", "runs/r", "--epochs", "1",
               *TRAIN_SMALL)[0] == 0  # fmt: skip
    saved = yaml.safe_load((work / "runs" / "r" / "config.yaml").read_text())
    assert Path(saved["data"]["root"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, text, err = m2s(capsys, "train", "--out", work / "runs" / "r", "--resume", "--epochs", "2")
    assert code == 0, err


# ---------------------------------------------------------------------------------------------------------------
# --checkpoint RUN_DIR
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_checkpoint_given_as_the_run_folder(command, ckpt, synth, tmp_path, capsys):
    """Said the file 'does not exist'; it exists, as a folder."""
    run = ckpt.parent
    if command == "evaluate":
        args = ["evaluate", "--checkpoint", run, "--data-root", synth, "--out", tmp_path / "o", "--no-progress"]
    else:
        args = ["predict", synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", run, "--out", tmp_path / "o",
                "--no-progress"]  # fmt: skip
    code, text, err = m2s(capsys, *args)
    assert code == 0, err
    assert str(run / "best.pt") in text + err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    args[args.index(run)] = empty
    args[args.index(tmp_path / "o")] = tmp_path / "o2"
    msg = refused(capsys, *args)
    assert "is a folder" in msg and "best.pt" in msg and "last.pt" in msg, msg


def test_a_full_disk_elsewhere_is_put_in_words():
    from m2s_lib.cli import _message

    msg = _message(OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.csv"))
    assert "/runs/x/metrics.csv" in msg and "no space left" in msg and "Errno" not in msg
