"""Helpers shared by the hostile-input corpus (tests/*/test_hostile_*.py): a new user's inputs, each ending in
the right exit code, one line that names the file or setting and what to do, no Python traceback, and nothing
the user already had changed.

The cases go through the stable entry points: the ``m2s`` command (``m2s_lib.cli.main`` in-process, and a few real
``python -m m2s_lib.cli`` processes), the reproduction's ``main`` and the data readers. Every file is tiny
(16-64 px) and every training run is one step of resnet18d from scratch, so the whole corpus takes seconds.
Fixtures ``synth`` and ``ckpt`` are module-scoped: import them into a test module to use them.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from m2s_lib.cli import main as m2s_main

TRAIN_SMALL = ["data.size=64", "data.train_sizes=[64]", "optim.batch_size=4", "model.channels=16",
               "run.progress=false", "run.max_steps_per_epoch=1", "data.val_fraction=0"]  # fmt: skip
CKPT_SMALL = [
    "data.size=64",
    "data.train_sizes=[64]",
    "optim.batch_size=4",
    "model.channels=16",
    "run.progress=false",
    "run.max_steps_per_epoch=1",
    "data.val_fraction=0.25",
    "data.test_size=64",
]


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


def pair_folder(
    root: Path,
    n: int = 3,
    size: int = 32,
    mask=lambda m: m.astype(np.uint8) * 255,
    image_ext: str = ".png",
    mask_ext: str = ".png",
) -> Path:
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


# ---------------------------------------------------------------------------------------------------------------
# Memory: peak RSS of a command, measured in a child process
# ---------------------------------------------------------------------------------------------------------------
GB = 1024**3
LIMIT = 2 * GB

# The child's watchdog: run the command, poll its resident memory, kill it above KILL_AT; report the peak
# (getrusage of the one child this wrapper waited for) as JSON on the last line of stdout.
_WRAPPER = r"""
import json, resource, subprocess, sys, time
import psutil
kill_at = int(sys.argv[1]); cmd = sys.argv[2:]
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
ps, killed = psutil.Process(proc.pid), False
while proc.poll() is None:
    try:
        if ps.memory_info().rss > kill_at:
            proc.kill(); killed = True
    except psutil.Error:
        pass
    time.sleep(0.02)
out, err = proc.communicate()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(out); print(json.dumps({"rc": proc.returncode, "peak": peak, "killed": killed, "err": err}))
"""


def run_measured(args: list[str], cwd: Path, kill_at: float = 2.5 * GB, timeout: float = 600) -> dict:
    """Run ``args`` (after the Python interpreter) in a child process; its exit code, stderr and peak RSS (bytes)."""
    import json
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _WRAPPER, str(int(kill_at)), sys.executable, *args], cwd=cwd,
                         capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(res.stdout.strip().splitlines()[-1])


def big_png(path: Path, width: int, height: int, rgb: bool = True) -> Path:
    """A valid PNG of ``width`` x ``height`` written row by row (a gradient with a bright square), never held whole."""
    channels = 3 if rgb else 1

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    base = ((np.arange(width) * 255) // max(1, width - 1)).astype(np.uint8)
    comp = zlib.compressobj(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0)))
        data = bytearray()
        for y in range(height):
            row = base.copy()
            if height // 3 <= y < 2 * height // 3:
                row[width // 3 : 2 * width // 3] = 255
            data += b"\x00" + (np.repeat(row, channels) if rgb else row).tobytes()
            if len(data) > (32 << 20) or y == height - 1:
                out = comp.compress(bytes(data)) + (comp.flush() if y == height - 1 else b"")
                if out:
                    fh.write(chunk(b"IDAT", out))
                data = bytearray()
        fh.write(chunk(b"IEND", b""))
    return path

