"""Hostile run folders for `m2s site` (issue 22, round 3): script in reproduce.json, figure captions and notebook
titles is shown as text, never run; a malformed notebook or reproduce.json is one line naming the file."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from hostile_support import m2s

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SCRIPT = "<script>alert('{}')</script>"


def _run(folder: Path, title: str = "# 00 · First <script>alert('title')</script>") -> Path:
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"{title}\n\nText.")]
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, folder / "00_first.ipynb")
    state = {"profile": "tiny", "started": "<img src=x onerror=alert('started')>", "wall_s": 60.0,
             "notebooks": {"00_first.ipynb": {"status": SCRIPT.format("status"), "seconds": 1.0}}}  # fmt: skip
    (folder / "reproduce.json").write_text(json.dumps(state))
    (folder / "00_first").mkdir()
    (folder / "00_first" / "dot.png").write_bytes(__import__("base64").b64decode(PNG_1PX))
    (folder / "00_first" / "outputs.json").write_text(json.dumps(
        [{"kind": "figure", "name": "dot", "files": ["dot.png"], "caption": SCRIPT.format("caption") + " | [x](y)"}]))
    return folder


def test_site_escapes_reproduce_json_captions_and_titles(tmp_path):
    from m2s_lib.teaching.site import build_site

    site, _ = build_site(_run(tmp_path / "run"))
    landing = (site / "index.html").read_text()
    for where in ("status", "caption", "title"):
        assert SCRIPT.format(where) not in landing, where
    assert "<script>alert" not in landing and landing.count("&lt;script&gt;alert(") >= 3  # shown as text
    assert "<img src=x" not in landing and "&lt;img src=x onerror=alert(" in landing


@pytest.mark.parametrize("junk", ["not json at all", "[1, 2]", '{"cells": 3}'])
def test_malformed_notebook_is_one_line_naming_the_file(junk, tmp_path, capsys):
    run = _run(tmp_path / "run", title="# 00 · First")
    (run / "01_broken.ipynb").write_text(junk)
    code, _, err = m2s(capsys, "site", "--run", run)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "01_broken.ipynb" in lines[0], err


def test_malformed_reproduce_json_is_one_line_naming_the_file(tmp_path, capsys):
    run = _run(tmp_path / "run", title="# 00 · First")
    (run / "reproduce.json").write_text('{"notebooks": {"00_first.ipynb": {"seconds": "abc"}}, "wall_s": "x"')
    code, _, err = m2s(capsys, "site", "--run", run)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "reproduce.json" in lines[0], err
