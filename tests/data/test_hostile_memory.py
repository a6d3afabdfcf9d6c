"""Hostile inputs against memory: decompression bombs, huge images and `m2s data synth --size 30000`. Peak memory is
measured in a child process (its maximum resident set size) and must stay under 2 GB; a watchdog stops the child
at 2.5 GB so that a regression fails the test instead of exhausting the machine."""
from __future__ import annotations

import pytest
from hostile_support import GB, LIMIT, big_png, run_measured  # child-process peak-RSS watchdog

from m2s_lib.data.layout import DatasetError, load_image


def test_decompression_bomb_is_refused_in_one_sentence(tmp_path):
    path = big_png(tmp_path / "bomb.png", 20000, 20000, rgb=False)
    with pytest.raises(DatasetError) as info:  # was PIL's DecompressionBombError (a traceback in every command)
        load_image(path)
    msg = str(info.value)
    assert "bomb.png" in msg and "pixels" in msg and "\n" not in msg, msg


def test_synth_with_a_huge_size_is_refused_and_stays_small(tmp_path):
    res = run_measured(["-m", "m2s_lib.cli", "data", "synth", "--task", "polyp", "--n", "1", "--size", "30000",
                        "--out", str(tmp_path / "big"), "--quiet"], cwd=tmp_path)  # fmt: skip
    print(f"peak RSS of m2s data synth --size 30000: {res['peak'] / GB:.2f} GB")
    assert not res["killed"] and res["peak"] < LIMIT, res["peak"] / GB
    assert res["rc"] == 1 and "Traceback" not in res["err"], res["err"]
    lines = [ln for ln in res["err"].splitlines() if ln.startswith("m2s data: error:")]
    assert len(lines) == 1 and "--size" in lines[0] and "30000" in lines[0], res["err"]
    assert not (tmp_path / "big").exists()


def test_a_10000_pixel_pair_is_read_under_2_gb(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    big_png(tmp_path / "d" / "images" / "a.png", 10000, 10000)
    big_png(tmp_path / "d" / "masks" / "a.png", 10000, 10000, rgb=False)
    code = ("from m2s_lib.data.folders import SegmentationFolder\n"
            "item = SegmentationFolder('d', size=352)[0]\n"
            "assert item['size'] == (10000, 10000) and item['mask'].sum() > 0, item['size']\n")
    res = run_measured(["-c", code], cwd=tmp_path)
    assert not res["killed"] and res["rc"] == 0, res
    print(f"peak RSS reading a 10000x10000 pair: {res['peak'] / GB:.2f} GB")
    assert res["peak"] < LIMIT, res["peak"] / GB
