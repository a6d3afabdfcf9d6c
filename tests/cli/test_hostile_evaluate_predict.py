"""Hostile inputs for `m2s evaluate` and `m2s predict`: devices, inputs, output folders."""

# ruff: noqa: F811 (the module-scoped fixtures synth/ckpt come from hostile_support)
from __future__ import annotations

import pytest
from hostile_support import (  # noqa: F401
    absent_devices,
    ckpt,
    digests,
    error_line,
    m2s,
    png,
    refused,
    rgb,
    synth,
)


# ---------------------------------------------------------------------------------------------------------------
# evaluate / predict: devices, inputs, output folders
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", absent_devices(["cuda", "mps"]))
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_absent_device_for_evaluate_predict_suggests_device_cpu(device, command, ckpt, synth, tmp_path, capsys):
    if command == "evaluate":
        args = ["--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "o"]
    else:
        args = [synth / "TestDataset" / "Kvasir" / "images", "--checkpoint", ckpt, "--out", tmp_path / "o"]
    msg = refused(capsys, command, *args, "--device", device, "--no-progress")
    assert repr(device) in msg and "--device cpu" in msg and "run.device" not in msg
    assert not (tmp_path / "o").exists()


def _evaluate(capsys, ckpt, synth, out, *extra):
    return m2s(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", out, "--no-progress", *extra)


def test_evaluate_refuses_a_folder_holding_an_evaluation(ckpt, synth, tmp_path, capsys):
    """Failure 3: a second evaluation replaced results.csv and left the first one's predictions of other sets."""
    out = tmp_path / "eval"
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "CVC-300")[0] == 0
    before = digests(out)
    got, _, err = _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir")
    assert got == 1
    msg = error_line(err, "evaluate")
    assert str(out) in msg and "--overwrite" in msg and "--out" in msg
    assert digests(out) == before


def test_evaluate_overwrite_removes_only_its_own_old_outputs(ckpt, synth, tmp_path, capsys):
    out = tmp_path / "eval"
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "CVC-300")[0] == 0
    notes = out / "my_notes.txt"
    notes.write_text("keep me")
    mine = png(out / "figures" / "fig.png", rgb())
    assert _evaluate(capsys, ckpt, synth, out, "--sets", "Kvasir", "--overwrite")[0] == 0
    assert not (out / "CVC-300").exists() and not (out / "per_image" / "CVC-300.csv").exists()
    assert (out / "Kvasir" / "0001.png").is_file()
    assert notes.read_text() == "keep me" and mine.is_file()
    import pandas as pd

    assert pd.read_csv(out / "results.csv")["dataset"].tolist() == ["Kvasir"]


def _predict(capsys, ckpt, out, *inputs_and_flags):
    return m2s(capsys, "predict", *inputs_and_flags, "--checkpoint", ckpt, "--out", out, "--no-progress")


def test_predict_refuses_a_folder_holding_predictions_and_overwrite_clears_them(ckpt, synth, tmp_path, capsys):
    out = tmp_path / "pred"
    kvasir = synth / "TestDataset" / "Kvasir" / "images"
    cvc = synth / "TestDataset" / "CVC-300" / "images"
    assert _predict(capsys, ckpt, out, kvasir, cvc)[0] == 0
    assert (out / "masks" / "0001-2.png").is_file()
    before = digests(out)
    got, _, err = _predict(capsys, ckpt, out, kvasir)
    assert got == 1 and "--overwrite" in error_line(err, "predict")
    assert digests(out) == before
    (out / "readme.txt").write_text("mine")
    assert _predict(capsys, ckpt, out, kvasir, "--overwrite")[0] == 0
    assert not (out / "masks" / "0001-2.png").exists() and (out / "masks" / "0001.png").is_file()
    assert (out / "readme.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_overwrite_never_deletes_a_dataset_used_as_output_folder(command, ckpt, synth, tmp_path, capsys):
    """`--out` pointed at the data itself: its masks/ (predict) or its set folders (evaluate) are not outputs."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth / "TestDataset", data / "TestDataset")
    before = digests(data)
    if command == "predict":
        args = [
            "predict",
            data / "TestDataset" / "Kvasir",
            "--checkpoint",
            ckpt,
            "--out",
            data / "TestDataset" / "Kvasir",
        ]
    else:
        args = ["evaluate", "--checkpoint", ckpt, "--data-root", data, "--out", data / "TestDataset"]
    for extra in ([], ["--overwrite"]):
        msg = refused(capsys, *args, "--no-progress", *extra)
        assert "no earlier" in msg and "choose another --out" in msg and ("masks" in msg or "Kvasir" in msg)
        assert digests(data) == before


def test_predict_with_an_unreadable_file_skips_and_lists_it(ckpt, synth, tmp_path, capsys):
    src = tmp_path / "photos"
    for k in range(3):
        png(src / f"p{k}.png", rgb(40, 48, k))
    (src / "p1.png").write_bytes(b"")
    before = digests(src)
    out = tmp_path / "pred"
    got, stdout, err = _predict(capsys, ckpt, out, src)
    assert got == 1
    msg = error_line(err, "predict")
    assert "p1.png" in msg and "skipped" in msg
    import pandas as pd

    df = pd.read_csv(out / "predictions.csv")
    assert df["name"].tolist() == ["p0", "p2"] and not (out / "masks" / "p1.png").exists()
    assert digests(src) == before


@pytest.mark.parametrize("case", ["missing input", "folder without images", "missing set", "no test sets"])
def test_evaluate_predict_input_errors(case, ckpt, synth, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    if case == "missing input":
        msg = refused(capsys, "predict", tmp_path / "nope.png", "--checkpoint", ckpt, "--out", tmp_path / "o")
        assert "nope.png" in msg and "does not exist" in msg
    elif case == "folder without images":
        msg = refused(capsys, "predict", tmp_path / "empty", "--checkpoint", ckpt, "--out", tmp_path / "o")
        assert "empty" in msg and "holds no images" in msg
    elif case == "missing set":
        msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", synth, "--out", tmp_path / "o",
                      "--sets", "Kvasr")  # fmt: skip
        assert "Kvasr" in msg and "Kvasir" in msg
    else:
        msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", tmp_path / "empty", "--out",
                      tmp_path / "o")  # fmt: skip
        assert "no test sets" in msg and "m2s data" in msg
    assert not (tmp_path / "o").exists()


def test_evaluate_with_an_unreadable_mask_names_it(ckpt, synth, tmp_path, capsys):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth / "TestDataset" / "Kvasir", root / "TestDataset" / "Kvasir")
    (root / "TestDataset" / "Kvasir" / "masks" / "0002.png").write_bytes(b"")
    msg = refused(capsys, "evaluate", "--checkpoint", ckpt, "--data-root", root, "--out", tmp_path / "o",
                  "--no-progress")  # fmt: skip
    assert "0002.png" in msg and "Replace or delete" in msg
