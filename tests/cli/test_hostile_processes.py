"""Hostile inputs seen in real `python -m m2s_lib.cli` processes: one line on the terminal, no traceback."""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import subprocess
import sys

from hostile_support import (  # noqa: F401
    _archive,
    m2s,
    synth,
)


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
